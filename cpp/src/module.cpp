/**
 * @file module.cpp
 * @brief PYBIND11_MODULE of `rankcore._core`: kernel selection, build information, and the
 *        calls of every bind_* (bindings.h).
 *
 * Kernel selection: active_kernel, available_kernels, set_kernel (dispatch.h). build_info:
 * compiler, flags, C++ and pybind11 versions, kernels, architecture and type sizes. At import
 * an ignored RANKCORE_KERNEL value is reported as a RuntimeWarning.
 */
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <thread>

#include "bindings.h"
#include "rankcore/dispatch.h"
#include "rankcore/dot.h"

#ifndef RANKCORE_COMPILE_FLAGS
#define RANKCORE_COMPILE_FLAGS "unknown"
#endif

using rankcore::index_t;

PyObject* descr_f32 = nullptr;
PyObject* descr_i64 = nullptr;
PyObject* descr_bool = nullptr;
PyObject* descr_f16 = nullptr;
PyObject* descr_u16 = nullptr;
PyObject* descr_i8 = nullptr;

namespace {

void set_kernel(const std::string& name) {
    if (rankcore::set_active_kernel(name)) return;
    std::string names;
    for (const auto& n : rankcore::available_kernel_names()) names += (names.empty() ? "'" : ", '") + n + "'";
    bool compiled = false;
    for (const auto& n : rankcore::compiled_kernel_names()) compiled = compiled || n == name;
    throw py::value_error("kernel '" + name + "' is " + (compiled ? "not supported by this CPU" : "unknown") +
                          "; available: " + names);
}

std::string compiler_name() {
#if defined(__clang__)
    return "clang " + std::to_string(__clang_major__) + "." + std::to_string(__clang_minor__) + "." +
           std::to_string(__clang_patchlevel__);
#elif defined(__GNUC__)
    return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
           std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_FULL_VER);
#else
    return "unknown";
#endif
}

py::dict build_info() {
    py::dict d;
    d["compiler"] = compiler_name();
    d["compile_flags"] = RANKCORE_COMPILE_FLAGS;
    d["cplusplus"] = static_cast<long>(__cplusplus);
    d["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) + "." +
                    std::to_string(PYBIND11_VERSION_PATCH);
    d["kernel"] = rankcore::active_kernel().name;
    d["kernels_available"] = rankcore::available_kernel_names();
    d["kernels_compiled"] = rankcore::compiled_kernel_names();
    d["kernel_functions"] = rankcore::kernel_function_names();
    d["table_dtypes"] = std::vector<std::string>{"float32", "float16", "bfloat16", "int8"};
    d["hardware_concurrency"] = std::thread::hardware_concurrency();
#if defined(RANKCORE_X86_64)
    d["arch"] = "x86_64";
#elif defined(__aarch64__) || defined(_M_ARM64)
    d["arch"] = "aarch64";
#else
    d["arch"] = "other";
#endif
    d["sizeof_index"] = sizeof(index_t);
    d["sizeof_float"] = sizeof(float);
    d["sizeof_pointer"] = sizeof(void*);
    d["prefetch_lines"] = rankcore::prefetch_lines;
    return d;
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("active_kernel", []() { return std::string(rankcore::active_kernel().name); },
          "Name of the kernel in use: 'avx2' or 'serial'.");
    m.def("available_kernels", &rankcore::available_kernel_names, "Kernels this CPU can run, best last.");
    m.def("set_kernel", &set_kernel, py::arg("name"),
          "Use the named kernel from now on (ValueError if unknown or unsupported).");
    m.def("build_info", &build_info, "Compiler, flags and kernel information of this build.");
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "rankcore native kernels: batched gather -> dot -> softmax -> sort, and a string id index.";

    const auto& api = py::detail::npy_api::get();
    descr_f32 = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_FLOAT_);
    descr_i64 = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_INT64_);
    descr_bool = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_BOOL_);
    descr_f16 = api.PyArray_DescrFromType_(23);  // NPY_HALF: pybind11 names no constant for it
    descr_u16 = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_USHORT_);
    descr_i8 = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_BYTE_);
    if (!descr_f32 || !descr_i64 || !descr_bool || !descr_f16 || !descr_u16 || !descr_i8) throw py::error_already_set();

    bind_kernels(m);
    bind_score(m);
    bind_single(m);
    bind_ids(m);
    bind_response(m);
    bind_rows(m);
    bind_topk(m);

    const std::string warning = rankcore::kernel_env_warning();
    if (!warning.empty() && PyErr_WarnEx(PyExc_RuntimeWarning, warning.c_str(), 1) < 0) throw py::error_already_set();
}
