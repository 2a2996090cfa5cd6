/**
 * @file bind_response.cpp
 * @brief ranking_entries (the personalizedRanking list of a response) and first_bad_id (the
 *        per-request check of input ids).
 *
 * Both work on the caller's own Python objects with the C API while holding the GIL: all
 * their work is creating or inspecting Python objects, so there is nothing to release it for.
 * Score rounding is rankcore::round_score (response.h).
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings.h"
#include "rankcore/response.h"

using rankcore::index_t;

namespace {

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

void bind_response(py::module_& m) {
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
}
