/**
 * @file bind_rows.cpp
 * @brief rows_in / all_known_distinct: row-set operations (rowset.h) on METH_FASTCALL.
 *
 * Called per request (the duplicate check of looked-up rows) and by filters (membership), so
 * they skip pybind11's dispatcher. Both take only C-contiguous int64 1-D arrays and raise
 * TypeError for anything else. Each keeps a per-thread scratch set, dropped when a call has
 * grown it beyond 2^20 entries.
 */
#include <pybind11/pybind11.h>

#include <new>
#include <vector>

#include "bindings.h"
#include "rankcore/rowset.h"

using rankcore::index_t;

namespace {

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
        rankcore::rows_in(values, m, rows, n, reinterpret_cast<bool*>(array_data(out)), scratch);
    } catch (const std::bad_alloc&) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    if (scratch.size() > (std::size_t(1) << 20)) scratch = std::vector<index_t>();
    return out;
}

PyMethodDef rows_methods[] = {
    {"all_known_distinct", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&all_known_distinct)),
     METH_FASTCALL,
     "all_known_distinct(rows)\n--\n\nTrue when every row of the int64 (n,) array is >= 0 and none repeats."},
    {"rows_in", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&rows_in)), METH_FASTCALL,
     "rows_in(values, rows)\n--\n\nBool (n,) array: whether each of the int64 (n,) rows is one of the int64 (m,) values."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

void bind_rows(py::module_& m) { add_fastcall_functions(m, rows_methods); }
