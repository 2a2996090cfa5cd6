/**
 * @file bindings.h
 * @brief What the binding files of the one extension module `rankcore._core` share.
 *
 * Contents: one `bind_<concept>(m)` per binding file (module.cpp calls each from
 * PYBIND11_MODULE), the checked conversion of array arguments (`require_array`), and the
 * raw NumPy helpers of the METH_FASTCALL entry points (`exact_array`, `new_vector`,
 * `array_data`, the canonical dtype descriptors).
 *
 * Every binding follows convert -> validate -> allocate outputs -> release the GIL -> call ->
 * wrap. Array arguments are taken as plain Python objects and checked here, so a rejected
 * array gets a message saying what to pass; nothing is ever converted or copied silently
 * (copies belong in Python, where they are visible). Errors: TypeError for a wrong type or
 * dtype, ValueError for wrong shapes, layouts or values (std::invalid_argument), IndexError
 * for an out-of-range candidate (std::out_of_range).
 *
 * Hot entry points called per request (bind_single.cpp, bind_rows.cpp) use CPython's
 * METH_FASTCALL convention directly instead of pybind11's dispatcher, which costs more than
 * the work of a small request, and read NumPy arrays through pybind11's array proxies. They
 * accept only arrays already in their exact form (canonical dtype, C-contiguous, aligned).
 */
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "rankcore/quant.h"
#include "rankcore/types.h"

namespace py = pybind11;

/// Kernel selection and build information (module.cpp).
void bind_kernels(pybind11::module_& m);
/// score / rank: batched requests through pybind11 (bind_score.cpp).
void bind_score(pybind11::module_& m);
/// rank_one / score_one: one request in exact form, METH_FASTCALL (bind_single.cpp).
void bind_single(pybind11::module_& m);
/// The IdIndex class (bind_ids.cpp).
void bind_ids(pybind11::module_& m);
/// ranking_entries / first_bad_id: response building and request id checks (bind_response.cpp).
void bind_response(pybind11::module_& m);
/// rows_in / all_known_distinct: row sets, METH_FASTCALL (bind_rows.cpp).
void bind_rows(pybind11::module_& m);
/// topk: the catalog-wide top-K scan (bind_topk.cpp).
void bind_topk(pybind11::module_& m);

/// A C-contiguous NumPy array of T.
template <class T>
using carray = py::array_t<T, py::array::c_style>;

/// `obj` as a C-contiguous, aligned array of exactly dtype T with `ndim` dimensions, or a clear
/// TypeError (not an array, wrong dtype) or ValueError (layout, alignment, dimensions).
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

/// NumPy's float32, int64 and bool descriptors, set by PYBIND11_MODULE before any bind_* runs
/// (never freed).
extern PyObject* descr_f32;
extern PyObject* descr_i64;
extern PyObject* descr_bool;
/// The storage dtypes of compressed item tables: float16, uint16 (bfloat16 bits), int8.
extern PyObject* descr_f16;
extern PyObject* descr_u16;
extern PyObject* descr_i8;

/// Borrowed data of `obj` when it is exactly a NumPy array of the given canonical dtype, with
/// `ndim` dimensions, C-contiguous and aligned; nullptr otherwise (then the caller takes the
/// general path, which converts or explains).
inline const void* exact_array(PyObject* obj, PyObject* descr, int ndim) {
    const auto& api = py::detail::npy_api::get();
    if (Py_TYPE(obj) != api.PyArray_Type_) return nullptr;
    const auto* a = py::detail::array_proxy(obj);
    constexpr int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (a->descr != descr || a->nd != ndim || (a->flags & need) != need) return nullptr;
    return a->data;
}

/// Data pointer of a NumPy array.
inline char* array_data(PyObject* a) { return py::detail::array_proxy(a)->data; }

/// A new uninitialised 1-D array of n elements of `descr`, or nullptr with a Python error set.
inline PyObject* new_vector(PyObject* descr, rankcore::index_t n) {
    const auto& api = py::detail::npy_api::get();
    Py_ssize_t dims[1] = {static_cast<Py_ssize_t>(n)};
    Py_INCREF(descr);  // stolen by PyArray_NewFromDescr
    return api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 1, dims, nullptr, nullptr, 0, nullptr);
}

/// Add a METH_FASTCALL table (null-terminated, static storage) to the module.
inline void add_fastcall_functions(pybind11::module_& m, PyMethodDef* table) {
    if (PyModule_AddFunctions(m.ptr(), table) < 0) throw py::error_already_set();
}

/// An item table argument of any storage dtype, checked; the arrays stay referenced.
struct TableArg {
    py::array table;
    carray<float> scale;
    rankcore::TableRef ref;
    rankcore::index_t n_rows = 0;
};

/**
 * `table` as an item table: a 2-D C-contiguous aligned array of float32, float16, uint16
 * (bfloat16 bits) or int8; `row_scale` None, or for int8 (required there) float32 (n_rows,).
 * TypeError for a wrong type or dtype, ValueError for layouts, shapes and a misplaced scale.
 */
inline TableArg require_table(const py::handle& table, const py::handle& row_scale) {
    TableArg t;
    const char* kinds = "float32, float16, uint16 (bfloat16 bits) or int8";
    if (!py::isinstance<py::array>(table))
        throw py::type_error(std::string("table must be a C-contiguous ") + kinds + " NumPy array, got " +
                             std::string(py::str(py::type::handle_of(table).attr("__name__"))));
    t.table = py::reinterpret_borrow<py::array>(table);
    PyObject* descr = reinterpret_cast<PyObject*>(py::detail::array_proxy(table.ptr())->descr);
    const auto& api = py::detail::npy_api::get();
    using rankcore::TableDtype;
    if (api.PyArray_EquivTypes_(descr, descr_f32)) t.ref.dtype = TableDtype::f32;
    else if (api.PyArray_EquivTypes_(descr, descr_f16)) t.ref.dtype = TableDtype::f16;
    else if (api.PyArray_EquivTypes_(descr, descr_u16)) t.ref.dtype = TableDtype::bf16;
    else if (api.PyArray_EquivTypes_(descr, descr_i8)) t.ref.dtype = TableDtype::i8;
    else
        throw py::type_error(std::string("table must be a ") + kinds + " array, got dtype " +
                             std::string(py::str(table.attr("dtype"))));
    constexpr int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if ((t.table.flags() & need) != need) throw py::value_error("table must be a C-contiguous, aligned array");
    if (t.table.ndim() != 2)
        throw py::value_error("table must be 2-D, got " + std::to_string(t.table.ndim()) + "-D");
    t.n_rows = t.table.shape(0);
    t.ref.ld = t.table.shape(1);
    t.ref.data = t.table.data();
    if (t.ref.dtype == TableDtype::i8) {
        if (row_scale.is_none()) throw py::value_error("an int8 table needs row_scale, float32 (n_rows,)");
        t.scale = require_array<float>(row_scale, "row_scale", "float32", 1);
        if (t.scale.shape(0) != t.n_rows)
            throw py::value_error("row_scale has " + std::to_string(t.scale.shape(0)) +
                                  " entries, expected one per table row (" + std::to_string(t.n_rows) + ")");
        t.ref.row_scale = t.scale.data();
    } else if (!row_scale.is_none()) {
        throw py::value_error("row_scale is only for int8 tables, got a " +
                              std::string(rankcore::dtype_name(t.ref.dtype)) + " table");
    }
    return t;
}

/**
 * The fast-path form of require_table: fills `ref` and `n_rows` and returns true when `table` is
 * exactly a 2-D C-contiguous aligned table of a storage dtype with a matching exact `row_scale`
 * (float32 (n_rows,) for int8, None otherwise); false otherwise (the caller takes the general path).
 */
inline bool exact_table(PyObject* table, PyObject* row_scale, rankcore::TableRef& ref, rankcore::index_t& n_rows) {
    using rankcore::TableDtype;
    const auto& api = py::detail::npy_api::get();
    if (Py_TYPE(table) != api.PyArray_Type_) return false;
    PyObject* descr = reinterpret_cast<PyObject*>(py::detail::array_proxy(table)->descr);
    if (descr == descr_f32) ref.dtype = TableDtype::f32;
    else if (descr == descr_f16) ref.dtype = TableDtype::f16;
    else if (descr == descr_u16) ref.dtype = TableDtype::bf16;
    else if (descr == descr_i8) ref.dtype = TableDtype::i8;
    else return false;
    const void* data = exact_array(table, descr, 2);
    if (!data) return false;
    const auto* a = py::detail::array_proxy(table);
    n_rows = a->dimensions[0];
    ref.ld = a->dimensions[1];
    ref.data = data;
    ref.row_scale = nullptr;
    if (ref.dtype == TableDtype::i8) {
        ref.row_scale = static_cast<const float*>(exact_array(row_scale, descr_f32, 1));
        return ref.row_scale && py::detail::array_proxy(row_scale)->dimensions[0] == n_rows;
    }
    return row_scale == Py_None;
}
