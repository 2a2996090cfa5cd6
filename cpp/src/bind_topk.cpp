/**
 * @file bind_topk.cpp
 * @brief Python binding of the catalog-wide top-K (topk.h): `topk(...)`.
 *
 * Order of work: check every argument while holding the GIL (exact dtypes through
 * require_array of bindings.h, nothing converted or copied silently; shapes; k; the mask's
 * length; excluded rows in range), copy the small exclude lists, allocate the outputs, then
 * release the GIL for the scan. Errors: TypeError for a wrong type or dtype, ValueError for
 * wrong shapes or values, IndexError for an excluded row outside the table.
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings.h"
#include "rankcore/dispatch.h"
#include "rankcore/topk.h"

using rankcore::index_t;

namespace {

py::tuple topk(const py::object& users, const py::object& table, const py::object& bias, index_t dim, index_t k,
               const py::object& allowed, const py::object& exclude, const py::object& exclude_offsets, double scale,
               index_t threads, const py::object& row_scale) {
    rankcore::TopKProblem p;
    const carray<float> u = require_array<float>(users, "users", "float32", 2);
    const TableArg t = require_table(table, row_scale);
    if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
    if (u.shape(1) != dim)
        throw py::value_error("users has " + std::to_string(u.shape(1)) + " columns, expected dim=" + std::to_string(dim));
    if (t.ref.ld < dim)
        throw py::value_error("table has " + std::to_string(t.ref.ld) + " columns, fewer than dim=" + std::to_string(dim));
    if (t.n_rows < 1) throw py::value_error("table has no rows");
    if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
    if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
    const float scale32 = static_cast<float>(scale);
    if (!std::isfinite(scale32)) throw py::value_error("scale must be a finite float32 value, got " + std::to_string(scale));
    p.users = u.data();
    p.n_users = u.shape(0);
    p.dim = dim;
    p.table = t.ref.data;
    p.dtype = t.ref.dtype;
    p.row_scale = t.ref.row_scale;
    p.n_rows = t.n_rows;
    p.ld = t.ref.ld;
    p.scale = scale32;
    p.k = std::min(k, p.n_rows);  // more columns than rows could never be filled
    carray<float> b;
    if (!bias.is_none()) {
        b = require_array<float>(bias, "bias", "float32", 1);
        if (b.shape(0) != p.n_rows)
            throw py::value_error("bias has " + std::to_string(b.shape(0)) + " entries, expected one per table row (" +
                                  std::to_string(p.n_rows) + ")");
        p.bias = b.data();
    }
    carray<std::uint8_t> mask;
    if (!allowed.is_none()) {
        if (!py::isinstance<py::array>(allowed))
            throw py::type_error("allowed must be a uint8 NumPy array of shape (N,) or (B, N)");
        const int nd = py::reinterpret_borrow<py::array>(allowed).ndim();
        mask = require_array<std::uint8_t>(allowed, "allowed", "uint8", nd == 2 ? 2 : 1);
        const bool per_user = nd == 2;
        if (mask.shape(nd - 1) != p.n_rows || (per_user && mask.shape(0) != p.n_users))
            throw py::value_error("allowed must have shape (" + std::to_string(p.n_rows) + ",) or (" +
                                  std::to_string(p.n_users) + ", " + std::to_string(p.n_rows) + "), got " +
                                  (per_user ? "(" + std::to_string(mask.shape(0)) + ", " + std::to_string(mask.shape(1)) + ")"
                                            : "(" + std::to_string(mask.shape(0)) + ",)"));
        p.allowed = mask.data();
        p.allowed_per_user = per_user;
    }
    // Private copies: the scan runs without the GIL, and the caller's arrays could change meanwhile.
    std::vector<index_t> ex_rows, ex_offsets;
    if (!exclude.is_none()) {
        const carray<index_t> e = require_array<index_t>(exclude, "exclude", "int64", 1);
        ex_rows.assign(e.data(), e.data() + e.shape(0));
        if (!exclude_offsets.is_none()) {
            const carray<index_t> o = require_array<index_t>(exclude_offsets, "exclude_offsets", "int64", 1);
            if (o.shape(0) != p.n_users + 1)
                throw py::value_error("exclude_offsets must have len(users) + 1 = " + std::to_string(p.n_users + 1) +
                                      " entries, got " + std::to_string(o.shape(0)));
            ex_offsets.assign(o.data(), o.data() + o.shape(0));
        }
    } else if (!exclude_offsets.is_none()) {
        throw py::value_error("exclude_offsets given without exclude");
    }
    p.exclude = ex_rows.data();
    p.n_exclude = static_cast<index_t>(ex_rows.size());
    p.exclude_offsets = ex_offsets.empty() ? nullptr : ex_offsets.data();
    rankcore::validate_topk(p);  // ValueError / IndexError, before any table memory is read

    carray<index_t> rows({p.n_users, p.k});
    carray<float> logits({p.n_users, p.k});
    carray<double> scores({p.n_users, p.k});
    carray<index_t> counts(p.n_users);
    carray<double> lognorm(p.n_users);
    rankcore::TopKOutput out;
    out.rows = rows.mutable_data();
    out.logits = logits.mutable_data();
    out.scores = scores.mutable_data();
    out.counts = counts.mutable_data();
    out.log_normalizer = lognorm.mutable_data();
    const rankcore::KernelTable& kt = rankcore::active_kernel();
    {
        py::gil_scoped_release release;
        rankcore::topk_batch(p, kt, out, static_cast<int>(std::min<index_t>(threads, 1 << 16)));
    }
    return py::make_tuple(rows, logits, scores, counts, lognorm);
}

}  // namespace

void bind_topk(py::module_& m) {
    m.def("topk", &topk, py::arg("users"), py::arg("table"), py::arg("bias"), py::arg("dim"), py::arg("k"),
          py::arg("allowed"), py::arg("exclude"), py::arg("exclude_offsets"), py::arg("scale"), py::arg("threads"),
          py::arg("row_scale") = py::none(),
          R"doc(Exact catalog-wide top-k of every user, with the softmax log-normaliser over ALL rows.

users: float32 (B, dim); table: (N, ld >= dim) float32, float16, uint16 (bfloat16 bits) or int8;
row_scale: float32 (N,) for an int8 table (its rows are q * row_scale[r]), else None;
bias: None or float32 (N,); k >= 1;
allowed: None or uint8 (N,) or (B, N), 0 = never returned (still in the normaliser);
exclude: None or int64 rows, each in [0, N); exclude_offsets: None (every user excludes all of
`exclude`) or int64 (B + 1,) CSR bounds; scale: multiplies every logit; threads: 0 = all cores.
logit = (dot(table[r, :dim], user) + bias[r]) * scale. Returns (rows, logits, scores, counts,
log_normalizer): int64, float32, float64 arrays (B, min(k, N)) best first (ties: lower row first),
padded with -1, -inf and 0 past counts[b]; int64 (B,) counts; float64 (B,) log_normalizer;
scores = exp(logit - log_normalizer).)doc");
}
