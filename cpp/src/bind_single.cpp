/**
 * @file bind_single.cpp
 * @brief rank_one / score_one: the single-request fast path, on CPython's METH_FASTCALL convention.
 *
 * Called once per request by the Python layer, so they skip pybind11's dispatcher (whose cost
 * would exceed the work of a small request) and are registered through a PyMethodDef table.
 * They accept only arguments already in their exact form (float32/int64, C-contiguous,
 * aligned, a Python int dim) and return None for anything else, so the Python layer converts
 * visibly and calls score/rank (bind_score.cpp), which explain what is wrong. C++ exceptions
 * become the Python exceptions pybind11 would raise (set_python_error).
 */
#include <pybind11/pybind11.h>

#include <cmath>
#include <new>
#include <stdexcept>

#include "bindings.h"
#include "rankcore/dispatch.h"
#include "rankcore/score.h"

using rankcore::index_t;

namespace {

/// A single request whose arguments (user, table, bias, dim, candidates) are all in their exact
/// form; `ok` is false when one is not (the caller then returns None: the general path).
struct ExactSingle {
    bool ok = false;
    rankcore::Problem p;
    index_t offsets[2] = {0, 0};
};

/// Parse args[0..4] and the row scale (None unless the table is int8); returns false with a
/// Python error set for a non-finite user vector.
bool parse_exact_single(PyObject* const* args, PyObject* row_scale, ExactSingle& out) {
    const float* user = static_cast<const float*>(exact_array(args[0], descr_f32, 1));
    const index_t* cand = static_cast<const index_t*>(exact_array(args[4], descr_i64, 1));
    rankcore::TableRef table;
    index_t n_rows = 0;
    if (!user || !cand || !PyLong_CheckExact(args[3]) || !exact_table(args[1], row_scale, table, n_rows)) return true;
    const index_t ld = table.ld;
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
    p.table = table.data;
    p.dtype = table.dtype;
    p.row_scale = table.row_scale;
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

/**
 * rank_one(user, table, bias, dim, candidates, k, result_type[, row_scale])
 *
 * One request, all inputs already in their exact form: user float32 (dim,), table (N, ld >= dim)
 * float32, float16, uint16 (bfloat16 bits) or int8 (then row_scale float32 (N,), else None or
 * absent), bias None or float32 (N,), candidates int64 (K,), k None or int >= 0. Returns
 * result_type(positions, items, scores, logits), or None when an argument is not in that form
 * (the caller then takes the general path). Errors as in rank().
 */
PyObject* rank_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 7 && nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "rank_one takes 7 or 8 positional arguments");
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
    if (!parse_exact_single(args, nargs == 8 ? args[7] : Py_None, in)) return nullptr;
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
 * score_one(user, table, bias, dim, candidates, result_type[, row_scale])
 *
 * As rank_one, for score(): returns result_type(scores, logits) in input order, or None.
 */
PyObject* score_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "score_one takes 6 or 7 positional arguments");
        return nullptr;
    }
    ExactSingle in;
    if (!parse_exact_single(args, nargs == 7 ? args[6] : Py_None, in)) return nullptr;
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

PyMethodDef single_methods[] = {
    {"rank_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&rank_one)), METH_FASTCALL,
     "rank_one(user, table, bias, dim, candidates, k, result_type[, row_scale])\n--\n\n"
     "One request whose inputs are already exact: user float32 (dim,), table (N, ld) float32, float16, "
     "uint16 (bfloat16 bits) or int8 (with row_scale float32 (N,)), bias None or "
     "float32 (N,), dim int, candidates int64 (K,), k None or int >= 0. Returns result_type(positions, items, "
     "scores, logits), or None when an argument is not in that form."},
    {"score_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&score_one)), METH_FASTCALL,
     "score_one(user, table, bias, dim, candidates, result_type[, row_scale])\n--\n\n"
     "As rank_one, for score(): result_type(scores, logits) in input order, or None when an argument is not "
     "in its exact form."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

void bind_single(py::module_& m) { add_fastcall_functions(m, single_methods); }
