/**
 * @file bindings.cpp
 * @brief The only pybind11 file: convert -> validate -> allocate outputs -> release the GIL -> call -> wrap.
 *
 * Array arguments are taken as plain Python objects and checked here, so a rejected array
 * gets a message saying what to pass; nothing is ever converted or copied silently (copies
 * belong in Python, where they are visible). Errors: TypeError for a wrong type or dtype,
 * ValueError for wrong shapes, layouts or values (std::invalid_argument), IndexError for an
 * out-of-range candidate (std::out_of_range).
 *
 * Hot entry points that are called per request (rank_one, score_one, rows_in,
 * all_known_distinct) use CPython's METH_FASTCALL convention directly instead of pybind11's
 * dispatcher, and read NumPy arrays through pybind11's array proxies: a call then costs
 * about 0.1 us instead of 1-2 us. They accept only arrays already in their exact form
 * (canonical dtype, C-contiguous, aligned); rank_one/score_one return None for anything else,
 * so the Python layer converts visibly and calls again.
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "rankcore/dispatch.h"
#include "rankcore/idindex.h"
#include "rankcore/response.h"
#include "rankcore/score.h"

#ifndef RANKCORE_COMPILE_FLAGS
#define RANKCORE_COMPILE_FLAGS "unknown"
#endif

namespace py = pybind11;
using rankcore::index_t;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

/// `obj` as a C-contiguous, aligned array of exactly dtype T with `ndim` dimensions, or a clear error.
template <class T>
carray<T> require_array(const py::handle& obj, const char* name, const char* dtype, int ndim) {
    const std::string fix = std::string("; use np.ascontiguousarray(") + name + ", dtype=np." + dtype + ")";
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a C-contiguous " + dtype + " NumPy array, got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))) + fix);
    if (!py::array_t<T, py::array::forcecast>::check_(obj))
        throw py::type_error(std::string(name) + " must be a C-contiguous " + dtype + " array, got dtype " +
                             std::string(py::str(obj.attr("dtype"))) + fix);
    if (!carray<T>::check_(obj))
        throw py::value_error(std::string(name) + " must be a C-contiguous " + dtype + " array" + fix);
    auto arr = py::reinterpret_borrow<carray<T>>(obj);
    if (!(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::value_error(std::string(name) + " is not aligned to its dtype" + fix);
    if (arr.ndim() != ndim)
        throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                              std::to_string(arr.ndim()) + "-D");
    return arr;
}

/// Checked inputs of score/rank; the arrays stay referenced for the duration of the call.
struct Inputs {
    carray<float> users, table, bias;
    carray<index_t> candidates;
    std::vector<index_t> offsets;  // a private copy: the caller's array could change while the GIL is released
    rankcore::Problem problem;
    int threads = 1;
};

Inputs convert(const py::object& users, const py::object& table, const py::object& bias, index_t dim,
               const py::object& candidates, const py::object& offsets, bool padded, index_t threads) {
    Inputs in;
    rankcore::Problem& p = in.problem;
    in.users = require_array<float>(users, "users", "float32", 2);
    in.table = require_array<float>(table, "table", "float32", 2);
    in.candidates = require_array<index_t>(candidates, "candidates", "int64", 1);
    if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
    if (in.users.shape(1) != dim)
        throw py::value_error("users has " + std::to_string(in.users.shape(1)) + " columns, expected dim=" +
                              std::to_string(dim));
    if (in.table.shape(1) < dim)
        throw py::value_error("table has " + std::to_string(in.table.shape(1)) + " columns, fewer than dim=" +
                              std::to_string(dim));
    if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
    {  // B x dim floats, a few ns: the Python layer leaves this check to us
        const float* u = in.users.data();
        const py::ssize_t total = in.users.shape(0) * static_cast<py::ssize_t>(dim);
        for (py::ssize_t i = 0; i < total; ++i)
            if (!std::isfinite(u[i]))
                throw py::value_error("user vector " + std::to_string(i / dim) +
                                      " contains NaN or inf (or values beyond float32 range)");
    }
    p.users = in.users.data();
    p.table = in.table.data();
    p.n_rows = in.table.shape(0);
    p.ld = in.table.shape(1);
    p.dim = dim;
    p.candidates = in.candidates.data();
    p.n_candidates = in.candidates.shape(0);
    p.n_requests = in.users.shape(0);
    p.padded = padded;
    if (!bias.is_none()) {
        in.bias = require_array<float>(bias, "bias", "float32", 1);
        if (in.bias.shape(0) != p.n_rows)
            throw py::value_error("bias has " + std::to_string(in.bias.shape(0)) + " entries, expected one per table row (" +
                                  std::to_string(p.n_rows) + ")");
        p.bias = in.bias.data();
    }
    if (offsets.is_none()) {
        if (p.n_requests != 1)
            throw py::value_error("offsets=None means a single request, but users has " +
                                  std::to_string(p.n_requests) + " rows; pass offsets of length " +
                                  std::to_string(p.n_requests + 1));
        in.offsets = {0, p.n_candidates};
    } else {
        const carray<index_t> given = require_array<index_t>(offsets, "offsets", "int64", 1);
        if (given.shape(0) != p.n_requests + 1)
            throw py::value_error("offsets must have len(users) + 1 = " + std::to_string(p.n_requests + 1) +
                                  " entries, got " + std::to_string(given.shape(0)));
        in.offsets.assign(given.data(), given.data() + given.shape(0));
    }
    p.offsets = in.offsets.data();
    in.threads = static_cast<int>(std::min<index_t>(threads, 1 << 16));
    return in;
}

py::tuple score(const py::object& users, const py::object& table, const py::object& bias, index_t dim,
                const py::object& candidates, const py::object& offsets, bool padded, index_t threads) {
    Inputs in = convert(users, table, bias, dim, candidates, offsets, padded, threads);
    const rankcore::Problem& p = in.problem;
    {
        py::gil_scoped_release release;
        rankcore::validate_problem(p);
    }
    carray<float> out_scores(p.n_candidates), out_logits(p.n_candidates);
    float* s = out_scores.mutable_data();
    float* l = out_logits.mutable_data();
    const rankcore::KernelTable& kt = rankcore::active_kernel();
    {
        py::gil_scoped_release release;
        rankcore::score_batch(p, kt, s, l, in.threads);
    }
    return py::make_tuple(out_scores, out_logits);
}

py::tuple rank(const py::object& users, const py::object& table, const py::object& bias, index_t dim,
               const py::object& candidates, const py::object& offsets, bool padded, index_t k, index_t threads) {
    Inputs in = convert(users, table, bias, dim, candidates, offsets, padded, threads);
    const rankcore::Problem& p = in.problem;
    if (k < -1) throw py::value_error("k must be -1 (all) or >= 0, got " + std::to_string(k));
    carray<index_t> out_offsets(p.n_requests + 1);
    index_t* oo = out_offsets.mutable_data();
    {
        py::gil_scoped_release release;
        rankcore::validate_problem(p, k, oo);
    }
    const index_t total = oo[p.n_requests];
    carray<index_t> positions(total), items(total);
    carray<float> out_scores(total), out_logits(total);
    index_t* pos = positions.mutable_data();
    index_t* it = items.mutable_data();
    float* s = out_scores.mutable_data();
    float* l = out_logits.mutable_data();
    const rankcore::KernelTable& kt = rankcore::active_kernel();
    {
        py::gil_scoped_release release;
        rankcore::rank_batch(p, kt, oo, pos, it, s, l, in.threads);
    }
    return py::make_tuple(positions, items, out_scores, out_logits, out_offsets);
}

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

// ---------------------------------------------------------------------------------------------
// rank_one: the single-request fast path, on the raw CPython calling convention

/// Borrowed data of `obj` when it is exactly a NumPy array of the given canonical dtype, with
/// `ndim` dimensions, C-contiguous and aligned; nullptr otherwise (then the caller takes the
/// general path, which converts or explains).
const void* exact_array(PyObject* obj, PyObject* descr, int ndim) {
    const auto& api = py::detail::npy_api::get();
    if (Py_TYPE(obj) != api.PyArray_Type_) return nullptr;
    const auto* a = py::detail::array_proxy(obj);
    constexpr int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (a->descr != descr || a->nd != ndim || (a->flags & need) != need) return nullptr;
    return a->data;
}

PyObject* new_vector(PyObject* descr, index_t n) {
    const auto& api = py::detail::npy_api::get();
    Py_ssize_t dims[1] = {static_cast<Py_ssize_t>(n)};
    Py_INCREF(descr);  // stolen by PyArray_NewFromDescr
    return api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 1, dims, nullptr, nullptr, 0, nullptr);
}

PyObject* descr_f32 = nullptr;
PyObject* descr_i64 = nullptr;

/// A single request whose arguments (user, table, bias, dim, candidates) are all in their exact
/// form; `ok` is false when one is not (the caller then returns None: the general path).
struct ExactSingle {
    bool ok = false;
    rankcore::Problem p;
    index_t offsets[2] = {0, 0};
};

/// Parse args[0..4]; returns false with a Python error set for a non-finite user vector.
bool parse_exact_single(PyObject* const* args, ExactSingle& out) {
    const float* user = static_cast<const float*>(exact_array(args[0], descr_f32, 1));
    const float* table = static_cast<const float*>(exact_array(args[1], descr_f32, 2));
    const index_t* cand = static_cast<const index_t*>(exact_array(args[4], descr_i64, 1));
    if (!user || !table || !cand || !PyLong_CheckExact(args[3])) return true;
    const auto* ta = py::detail::array_proxy(args[1]);
    const index_t n_rows = ta->dimensions[0], ld = ta->dimensions[1];
    const index_t dim = PyLong_AsLongLong(args[3]);
    if (dim < 1 || dim > ld || py::detail::array_proxy(args[0])->dimensions[0] != dim) {
        PyErr_Clear();  // an overflowing dim
        return true;
    }
    const float* bias = nullptr;
    if (args[2] != Py_None) {
        bias = static_cast<const float*>(exact_array(args[2], descr_f32, 1));
        if (!bias || py::detail::array_proxy(args[2])->dimensions[0] != n_rows) return true;
    }
    for (index_t i = 0; i < dim; ++i)
        if (!std::isfinite(user[i])) {
            PyErr_SetString(PyExc_ValueError, "user vector 0 contains NaN or inf (or values beyond float32 range)");
            return false;
        }
    const index_t n = py::detail::array_proxy(args[4])->dimensions[0];
    rankcore::Problem& p = out.p;
    out.offsets[1] = n;
    p.users = user;
    p.table = table;
    p.n_rows = n_rows;
    p.ld = ld;
    p.dim = dim;
    p.bias = bias;
    p.candidates = cand;
    p.n_candidates = n;
    p.offsets = out.offsets;
    p.n_requests = 1;
    out.ok = true;
    return true;
}

/// Set the Python exception matching a C++ one (as pybind11's translators would).
void set_python_error() {
    try {
        throw;
    } catch (const std::out_of_range& e) {
        PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::invalid_argument& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
}

/// Run fn with the GIL released when the request is big enough for that to pay.
template <class Fn>
void run_single(index_t n, Fn&& fn) {
    if (n >= 64) {
        py::gil_scoped_release release;
        fn();
    } else {
        fn();
    }
}

/// result_type(*arrays); the arrays' references are released either way.
template <std::size_t N>
PyObject* build_result(PyObject* result_type, PyObject* (&arrays)[N], bool ready) {
    PyObject* result = ready ? PyObject_Vectorcall(result_type, arrays, N, nullptr) : nullptr;
    for (PyObject* o : arrays) Py_XDECREF(o);
    return result;
}

char* array_data(PyObject* a) { return py::detail::array_proxy(a)->data; }

/**
 * rank_one(user, table, bias, dim, candidates, k, result_type)
 *
 * One request, all inputs already in their exact form: user float32 (dim,), table float32
 * (N, ld >= dim), bias None or float32 (N,), candidates int64 (K,), k None or int >= 0. Returns
 * result_type(positions, items, scores, logits), or None when an argument is not in that form
 * (the caller then takes the general path). Errors as in rank().
 */
PyObject* rank_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "rank_one takes 7 positional arguments");
        return nullptr;
    }
    index_t k = -1;
    if (args[5] != Py_None) {
        if (!PyLong_CheckExact(args[5])) Py_RETURN_NONE;
        k = PyLong_AsLongLong(args[5]);
        if (k < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }
    ExactSingle in;
    if (!parse_exact_single(args, in)) return nullptr;
    if (!in.ok) Py_RETURN_NONE;
    const rankcore::Problem& p = in.p;
    index_t out_offsets[2];
    PyObject* out[4] = {nullptr, nullptr, nullptr, nullptr};
    bool ready = false;
    try {
        rankcore::validate_problem(p, k, out_offsets);
        const index_t total = out_offsets[1];
        out[0] = new_vector(descr_i64, total);
        out[1] = new_vector(descr_i64, total);
        out[2] = new_vector(descr_f32, total);
        out[3] = new_vector(descr_f32, total);
        if (out[0] && out[1] && out[2] && out[3]) {
            const rankcore::KernelTable& kt = rankcore::active_kernel();
            run_single(p.n_candidates, [&] {
                rankcore::rank_batch(p, kt, out_offsets, reinterpret_cast<index_t*>(array_data(out[0])),
                                     reinterpret_cast<index_t*>(array_data(out[1])),
                                     reinterpret_cast<float*>(array_data(out[2])),
                                     reinterpret_cast<float*>(array_data(out[3])), 1);
            });
            ready = true;
        }
    } catch (...) {
        set_python_error();
    }
    return build_result(args[6], out, ready);
}

/**
 * score_one(user, table, bias, dim, candidates, result_type)
 *
 * As rank_one, for score(): returns result_type(scores, logits) in input order, or None.
 */
PyObject* score_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "score_one takes 6 positional arguments");
        return nullptr;
    }
    ExactSingle in;
    if (!parse_exact_single(args, in)) return nullptr;
    if (!in.ok) Py_RETURN_NONE;
    const rankcore::Problem& p = in.p;
    PyObject* out[2] = {nullptr, nullptr};
    bool ready = false;
    try {
        rankcore::validate_problem(p);
        out[0] = new_vector(descr_f32, p.n_candidates);
        out[1] = new_vector(descr_f32, p.n_candidates);
        if (out[0] && out[1]) {
            const rankcore::KernelTable& kt = rankcore::active_kernel();
            run_single(p.n_candidates, [&] {
                rankcore::score_batch(p, kt, reinterpret_cast<float*>(array_data(out[0])),
                                      reinterpret_cast<float*>(array_data(out[1])), 1);
            });
            ready = true;
        }
    } catch (...) {
        set_python_error();
    }
    return build_result(args[5], out, ready);
}

/// all_known_distinct(rows): rows must be an int64 (n,) C-contiguous array.
PyObject* all_known_distinct(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    const index_t* rows = nargs == 1 ? static_cast<const index_t*>(exact_array(args[0], descr_i64, 1)) : nullptr;
    if (!rows) {
        PyErr_SetString(PyExc_TypeError, "all_known_distinct takes one C-contiguous int64 (n,) array");
        return nullptr;
    }
    static thread_local std::vector<index_t> scratch;
    const bool ok = rankcore::all_known_distinct(rows, py::detail::array_proxy(args[0])->dimensions[0], scratch);
    if (scratch.size() > (std::size_t(1) << 20)) scratch = std::vector<index_t>();
    return PyBool_FromLong(ok);
}

PyObject* descr_bool = nullptr;

/// rows_in(values, rows): both int64 (m,) / (n,) C-contiguous arrays; returns bool (n,).
PyObject* rows_in(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    const index_t* values = nargs == 2 ? static_cast<const index_t*>(exact_array(args[0], descr_i64, 1)) : nullptr;
    const index_t* rows = nargs == 2 ? static_cast<const index_t*>(exact_array(args[1], descr_i64, 1)) : nullptr;
    if (!values || !rows) {
        PyErr_SetString(PyExc_TypeError, "rows_in takes two C-contiguous int64 1-D arrays");
        return nullptr;
    }
    const index_t m = py::detail::array_proxy(args[0])->dimensions[0];
    const index_t n = py::detail::array_proxy(args[1])->dimensions[0];
    PyObject* out = new_vector(descr_bool, n);
    if (!out) return nullptr;
    static thread_local std::vector<index_t> scratch;
    try {
        rankcore::rows_in(values, m, rows, n, reinterpret_cast<bool*>(py::detail::array_proxy(out)->data), scratch);
    } catch (const std::bad_alloc&) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    if (scratch.size() > (std::size_t(1) << 20)) scratch = std::vector<index_t>();
    return out;
}

PyMethodDef fast_methods[] = {
    {"rank_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&rank_one)), METH_FASTCALL,
     "rank_one(user, table, bias, dim, candidates, k, result_type)\n--\n\n"
     "One request whose inputs are already exact: user float32 (dim,), table float32 (N, ld), bias None or "
     "float32 (N,), dim int, candidates int64 (K,), k None or int >= 0. Returns result_type(positions, items, "
     "scores, logits), or None when an argument is not in that form."},
    {"score_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&score_one)), METH_FASTCALL,
     "score_one(user, table, bias, dim, candidates, result_type)\n--\n\n"
     "As rank_one, for score(): result_type(scores, logits) in input order, or None when an argument is not "
     "in its exact form."},
    {"all_known_distinct", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&all_known_distinct)),
     METH_FASTCALL,
     "all_known_distinct(rows)\n--\n\nTrue when every row of the int64 (n,) array is >= 0 and none repeats."},
    {"rows_in", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&rows_in)), METH_FASTCALL,
     "rows_in(values, rows)\n--\n\nBool (n,) array: whether each of the int64 (n,) rows is one of the int64 (m,) values."},
    {nullptr, nullptr, 0, nullptr}};

// ---------------------------------------------------------------------------------------------
// IdIndex

/// UTF-8 views of a list/tuple/array of str. Ids without a UTF-8 form (lone surrogates) are
/// listed in `invalid` (their view is empty): they cannot be in any index.
struct Utf8Views {
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    std::vector<std::size_t> invalid;
    std::string storage;  // encoded bytes of NumPy '<U' input
    py::object keep;      // the sequence the pointers borrow from
};

Utf8Views utf8_views(const py::handle& ids, bool strict) {
    Utf8Views v;
    const char* what = "ids must be a list or tuple of str, or a 1-D NumPy array of dtype object or str";
    auto from_object = [&](PyObject* item, std::size_t i) {
        if (!PyUnicode_Check(item))
            throw py::type_error("ids[" + std::to_string(i) + "] is " +
                                 std::string(Py_TYPE(item)->tp_name) + ", not str");
        if (PyUnicode_IS_COMPACT_ASCII(item)) {  // the common case: the bytes are the str's own data
            v.ptrs[i] = static_cast<const char*>(PyUnicode_DATA(item));
            v.lens[i] = static_cast<std::size_t>(PyUnicode_GET_LENGTH(item));
            return;
        }
        Py_ssize_t len = 0;
        const char* s = PyUnicode_AsUTF8AndSize(item, &len);
        if (!s) {
            if (strict) throw py::error_already_set();
            PyErr_Clear();
            v.invalid.push_back(i);
            s = "";
            len = 0;
        }
        v.ptrs[i] = s;
        v.lens[i] = static_cast<std::size_t>(len);
    };
    if (PyList_Check(ids.ptr()) || PyTuple_Check(ids.ptr())) {
        v.keep = py::reinterpret_borrow<py::object>(ids);
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(ids.ptr());
        PyObject** items = PySequence_Fast_ITEMS(ids.ptr());
        v.ptrs.resize(static_cast<std::size_t>(n));
        v.lens.resize(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) from_object(items[i], static_cast<std::size_t>(i));
        return v;
    }
    if (!py::isinstance<py::array>(ids)) throw py::type_error(std::string(what) + ", got " + Py_TYPE(ids.ptr())->tp_name);
    auto arr = py::reinterpret_borrow<py::array>(ids);
    if (arr.ndim() != 1) throw py::value_error(std::string(what) + "; got a " + std::to_string(arr.ndim()) + "-D array");
    v.keep = arr;
    const std::size_t n = static_cast<std::size_t>(arr.shape(0));
    const char kind = arr.dtype().kind();
    const char* base = static_cast<const char*>(arr.data());
    const py::ssize_t stride = arr.strides(0);
    v.ptrs.resize(n);
    v.lens.resize(n);
    if (kind == 'O') {
        for (std::size_t i = 0; i < n; ++i) {
            PyObject* item;
            std::memcpy(&item, base + static_cast<py::ssize_t>(i) * stride, sizeof item);
            from_object(item, i);
        }
        return v;
    }
    if (kind == 'U') {
        const char order = arr.dtype().byteorder();
        if (order == '>') throw py::type_error("ids has big-endian str dtype; use ids.astype(str)");
        const std::size_t width = static_cast<std::size_t>(arr.itemsize()) / 4;
        std::vector<std::size_t> starts(n);
        std::vector<std::uint32_t> buf(width);
        for (std::size_t i = 0; i < n; ++i) {
            std::memcpy(buf.data(), base + static_cast<py::ssize_t>(i) * stride, width * 4);
            std::size_t len = width;
            while (len > 0 && buf[len - 1] == 0) --len;  // NumPy strips trailing NULs
            starts[i] = v.storage.size();
            if (!rankcore::append_utf8_from_ucs4(buf.data(), len, v.storage)) {
                if (strict) throw py::value_error("ids[" + std::to_string(i) + "] is not valid Unicode");
                v.storage.resize(starts[i]);
                v.invalid.push_back(i);
            }
            v.lens[i] = v.storage.size() - starts[i];
        }
        for (std::size_t i = 0; i < n; ++i) v.ptrs[i] = v.storage.data() + starts[i];
        return v;
    }
    throw py::type_error(std::string(what) + ", got an array of dtype " + std::string(py::str(arr.dtype())));
}

class PyIdIndex {
public:
    static PyIdIndex from_sequence(const py::handle& ids) {
        Utf8Views v = utf8_views(ids, true);
        const std::size_t n = v.ptrs.size();
        carray<index_t> offsets(static_cast<py::ssize_t>(n + 1));
        index_t* o = offsets.mutable_data();
        o[0] = 0;
        for (std::size_t i = 0; i < n; ++i) o[i + 1] = o[i] + static_cast<index_t>(v.lens[i]);
        carray<std::uint8_t> data(static_cast<py::ssize_t>(o[n]));
        std::uint8_t* d = data.mutable_data();
        for (std::size_t i = 0; i < n; ++i)
            if (v.lens[i]) std::memcpy(d + o[i], v.ptrs[i], v.lens[i]);
        data.attr("flags").attr("writeable") = false;
        offsets.attr("flags").attr("writeable") = false;
        return PyIdIndex(std::move(data), std::move(offsets));
    }

    static PyIdIndex from_blob(const py::object& data, const py::object& offsets) {
        auto d = require_array<std::uint8_t>(data, "data", "uint8", 1);
        auto o = require_array<index_t>(offsets, "offsets", "int64", 1);
        if (o.shape(0) < 1) throw py::value_error("offsets must have n + 1 >= 1 entries");
        rankcore::validate_id_blob(o.data(), o.shape(0) - 1, d.shape(0));
        return PyIdIndex(std::move(d), std::move(o));
    }

    py::array_t<index_t> lookup(const py::handle& ids) const {
        Utf8Views v = utf8_views(ids, false);
        const index_t n = static_cast<index_t>(v.ptrs.size());
        py::array_t<index_t> out(n);
        index_t* r = out.mutable_data();
        std::vector<std::uint64_t> hashes;
        index_.find_batch(v.ptrs.data(), v.lens.data(), n, r, hashes);
        for (std::size_t i : v.invalid) r[i] = -1;
        return out;
    }

    index_t get(const py::handle& id) const {
        if (!PyUnicode_Check(id.ptr())) throw py::type_error(std::string("id must be str, not ") + Py_TYPE(id.ptr())->tp_name);
        Py_ssize_t len = 0;
        const char* s = PyUnicode_AsUTF8AndSize(id.ptr(), &len);
        if (!s) {
            PyErr_Clear();
            return -1;
        }
        return index_.find(s, static_cast<std::size_t>(len));
    }

    bool contains(const py::handle& id) const { return PyUnicode_Check(id.ptr()) && get(id) >= 0; }

    index_t size() const { return index_.size(); }

    py::str id_at(index_t row) const {
        if (row < 0 || row >= index_.size())
            throw py::index_error("row " + std::to_string(row) + " out of range for an IdIndex of " +
                                  std::to_string(index_.size()) + " ids");
        PyObject* s = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(index_.bytes(row)),
                                           static_cast<Py_ssize_t>(index_.length(row)), "strict");
        if (!s) throw py::error_already_set();
        return py::reinterpret_steal<py::str>(s);
    }

    py::tuple blob() const { return py::make_tuple(data_, offsets_); }

private:
    PyIdIndex(carray<std::uint8_t> data, carray<index_t> offsets) : data_(std::move(data)), offsets_(std::move(offsets)) {
        index_t dup[2] = {-1, -1};
        bool ok;
        {
            py::gil_scoped_release release;
            ok = index_.build(data_.data(), offsets_.data(), offsets_.shape(0) - 1, dup);
        }
        if (!ok) {
            PyObject* s = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(index_.bytes(dup[0])),
                                               static_cast<Py_ssize_t>(index_.length(dup[0])), "backslashreplace");
            if (!s) throw py::error_already_set();
            const std::string id = py::repr(py::reinterpret_steal<py::str>(s));
            throw py::value_error("duplicate id " + id + " at rows " + std::to_string(dup[0]) + " and " +
                                  std::to_string(dup[1]));
        }
    }

    carray<std::uint8_t> data_;
    carray<index_t> offsets_;
    rankcore::IdIndex index_;
};

// ---------------------------------------------------------------------------------------------
// Response entries

/// Interned dict keys of response entries, created once at module import (never freed).
PyObject* key_item_id = nullptr;
PyObject* key_score = nullptr;

/// `obj` as a list or tuple whose items are all str, or TypeError.
void require_str_sequence(const py::handle& obj, const char* name) {
    if (!PyList_Check(obj.ptr()) && !PyTuple_Check(obj.ptr()))
        throw py::type_error(std::string(name) + " must be a list or tuple of str, got " + Py_TYPE(obj.ptr())->tp_name);
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj.ptr());
    PyObject** items = PySequence_Fast_ITEMS(obj.ptr());
    for (Py_ssize_t i = 0; i < n; ++i)
        if (!PyUnicode_Check(items[i]))
            throw py::type_error(std::string(name) + "[" + std::to_string(i) + "] is " + Py_TYPE(items[i])->tp_name +
                                 ", not str");
}

/// {key: value} with a borrowed value, or nullptr with a Python error set.
PyObject* entry_dict(PyObject* item_id) {
    PyObject* d = PyDict_New();
    if (d && PyDict_SetItem(d, key_item_id, item_id) < 0) Py_CLEAR(d);
    return d;
}

/**
 * The response's ranking list, built with the C API while holding the GIL (all the work is
 * creating Python objects; there is nothing to release the GIL for). Every input is checked
 * before the first object is created; the ids are the caller's own str objects (new references,
 * no copies), and the keys are interned once.
 */
py::list ranking_entries(const py::handle& item_ids, const py::handle& positions, const py::handle& scores,
                         const py::handle& unknown_ids) {
    if (!PyList_Check(item_ids.ptr()) && !PyTuple_Check(item_ids.ptr()))
        throw py::type_error(std::string("item_ids must be a list or tuple of str, got ") + Py_TYPE(item_ids.ptr())->tp_name);
    auto pos = require_array<index_t>(positions, "positions", "int64", 1);
    auto sc = require_array<float>(scores, "scores", "float32", 1);
    const py::ssize_t n = pos.shape(0);
    if (sc.shape(0) != n)
        throw py::value_error("scores has " + std::to_string(sc.shape(0)) + " entries, positions has " +
                              std::to_string(n));
    if (!PyList_Check(unknown_ids.ptr()) && !PyTuple_Check(unknown_ids.ptr()))
        throw py::type_error(std::string("unknown_ids must be a list or tuple of str, got ") +
                             Py_TYPE(unknown_ids.ptr())->tp_name);
    require_str_sequence(item_ids, "item_ids");
    require_str_sequence(unknown_ids, "unknown_ids");
    const Py_ssize_t n_items = PySequence_Fast_GET_SIZE(item_ids.ptr());
    const index_t* p = pos.data();
    for (py::ssize_t j = 0; j < n; ++j)
        if (p[j] < 0 || p[j] >= n_items)
            throw py::index_error("positions[" + std::to_string(j) + "]=" + std::to_string(p[j]) +
                                  " out of range for " + std::to_string(n_items) + " item_ids");

    // No Python-visible state changes and no exceptions from here on except MemoryError.
    PyObject** ids = PySequence_Fast_ITEMS(item_ids.ptr());
    PyObject** unknown = PySequence_Fast_ITEMS(unknown_ids.ptr());
    const Py_ssize_t n_unknown = PySequence_Fast_GET_SIZE(unknown_ids.ptr());
    const float* s = sc.data();
    PyObject* out = PyList_New(n + n_unknown);  // slots start NULL; list dealloc skips them
    if (!out) throw py::error_already_set();
    for (py::ssize_t j = 0; j < n; ++j) {
        PyObject* d = entry_dict(ids[p[j]]);
        PyObject* f = d ? PyFloat_FromDouble(rankcore::round_score(static_cast<double>(s[j]))) : nullptr;
        const int rc = f ? PyDict_SetItem(d, key_score, f) : -1;
        Py_XDECREF(f);
        if (rc < 0) {
            Py_XDECREF(d);
            Py_DECREF(out);
            throw py::error_already_set();
        }
        PyList_SET_ITEM(out, j, d);
    }
    for (Py_ssize_t j = 0; j < n_unknown; ++j) {
        PyObject* d = entry_dict(unknown[j]);
        if (!d) {
            Py_DECREF(out);
            throw py::error_already_set();
        }
        PyList_SET_ITEM(out, n + j, d);
    }
    return py::reinterpret_steal<py::list>(out);
}

/**
 * Index of the first element of a list/tuple that is not a str or is longer than ``max_len``
 * code points, or -1 when there is none. Request validation calls it on every inputList, so it
 * is one C loop instead of two Python passes (types, then lengths).
 */
py::ssize_t first_bad_id(const py::handle& ids, py::ssize_t max_len) {
    if (!PyList_Check(ids.ptr()) && !PyTuple_Check(ids.ptr()))
        throw py::type_error(std::string("ids must be a list or tuple, got ") + Py_TYPE(ids.ptr())->tp_name);
    PyObject** items = PySequence_Fast_ITEMS(ids.ptr());
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(ids.ptr());
    for (Py_ssize_t i = 0; i < n; ++i)
        if (!PyUnicode_Check(items[i]) || PyUnicode_GET_LENGTH(items[i]) > max_len) return i;
    return -1;
}

}  // namespace

void bind_topk(py::module_& m);  // bind_topk.cpp

PYBIND11_MODULE(_core, m) {
    m.doc() = "rankcore native kernels: batched gather -> dot -> softmax -> sort, and a string id index.";

    m.def("score", &score, py::arg("users"), py::arg("table"), py::arg("bias"), py::arg("dim"), py::arg("candidates"),
          py::arg("offsets"), py::arg("padded"), py::arg("threads"),
          R"doc(Softmax scores and logits of every candidate, in input order.

users: float32 (B, dim); table: float32 (N, ld >= dim); bias: None or float32 (N,);
candidates: int64 (n,); offsets: None (B == 1) or int64 (B + 1,); padded: -1 is padding;
threads: 0 = all cores. Returns (scores, logits), float32 (n,) each; padding gets 0 and -inf.)doc");
    m.def("rank", &rank, py::arg("users"), py::arg("table"), py::arg("bias"), py::arg("dim"), py::arg("candidates"),
          py::arg("offsets"), py::arg("padded"), py::arg("k"), py::arg("threads"),
          R"doc(Valid candidates of each request by descending score (ties: input order), top k (-1 = all).

Returns (positions, items, scores, logits, out_offsets): int64, int64, float32, float32 flat arrays
concatenated per request, and int64 (B + 1,) offsets into them.)doc");
    m.def("active_kernel", []() { return std::string(rankcore::active_kernel().name); },
          "Name of the kernel in use: 'avx2' or 'serial'.");
    m.def("available_kernels", &rankcore::available_kernel_names, "Kernels this CPU can run, best last.");
    m.def("set_kernel", &set_kernel, py::arg("name"),
          "Use the named kernel from now on (ValueError if unknown or unsupported).");
    m.def("build_info", &build_info, "Compiler, flags and kernel information of this build.");

    descr_f32 = py::detail::npy_api::get().PyArray_DescrFromType_(py::detail::npy_api::NPY_FLOAT_);
    descr_i64 = py::detail::npy_api::get().PyArray_DescrFromType_(py::detail::npy_api::NPY_INT64_);
    descr_bool = py::detail::npy_api::get().PyArray_DescrFromType_(py::detail::npy_api::NPY_BOOL_);
    if (!descr_f32 || !descr_i64 || !descr_bool) throw py::error_already_set();
    if (PyModule_AddFunctions(m.ptr(), fast_methods) < 0) throw py::error_already_set();
    m.attr("CHECKS_USERS") = true;  // score/rank reject non-finite user vectors themselves

    key_item_id = PyUnicode_InternFromString("itemId");
    key_score = PyUnicode_InternFromString("score");
    if (!key_item_id || !key_score) throw py::error_already_set();
    m.def("ranking_entries", &ranking_entries, py::arg("item_ids"), py::arg("positions"), py::arg("scores"),
          py::arg("unknown_ids"),
          R"doc(The personalizedRanking list of a GetPersonalizedRanking response.

item_ids: list or tuple of str (the request's input ids); positions: int64 (n,) indices into it;
scores: float32 (n,); unknown_ids: list or tuple of str. Returns
[{"itemId": item_ids[p], "score": float(np.round(np.float64(s), 7))} for p, s in zip(positions, scores)]
+ [{"itemId": u} for u in unknown_ids], reusing the given str objects. TypeError for wrong types,
ValueError for wrong shapes, IndexError for a position outside item_ids.)doc");

    m.def("first_bad_id", &first_bad_id, py::arg("ids"), py::arg("max_len"),
          "Index of the first element of a list/tuple that is not a str or is longer than max_len "
          "code points, or -1.");

    py::class_<PyIdIndex>(m, "IdIndex", "Hash index from string ids to rows (read-only after construction).")
        .def(py::init([](const py::object& ids) { return PyIdIndex::from_sequence(ids); }), py::arg("ids"))
        .def_static("from_blob", &PyIdIndex::from_blob, py::arg("data"), py::arg("offsets"),
                    "Index ids stored as UTF-8 bytes: id i is data[offsets[i]:offsets[i + 1]]. The arrays are "
                    "referenced, not copied, and must not be modified afterwards.")
        .def("lookup", &PyIdIndex::lookup, py::arg("ids"), "Rows of the ids (int64 array), -1 for unknown ids.")
        .def("get", &PyIdIndex::get, py::arg("id"), "Row of the id, or -1.")
        .def("__contains__", &PyIdIndex::contains, py::arg("id"))
        .def("__len__", &PyIdIndex::size)
        .def("id_at", &PyIdIndex::id_at, py::arg("row"), "The id stored at a row.")
        .def("blob", &PyIdIndex::blob, "(data, offsets): the UTF-8 bytes and int64 offsets the index is built on.")
        .def("__repr__", [](const PyIdIndex& self) { return "IdIndex(" + std::to_string(self.size()) + " ids)"; });

    const std::string warning = rankcore::kernel_env_warning();
    if (!warning.empty() && PyErr_WarnEx(PyExc_RuntimeWarning, warning.c_str(), 1) < 0) throw py::error_already_set();
    bind_topk(m);
}
