/**
 * @file bind_score.cpp
 * @brief score / rank: batched requests (B users, flat candidates with offsets) through pybind11.
 *
 * `convert` checks every argument and fills a rankcore::Problem (score.h); the arrays stay
 * referenced for the duration of the call and the offsets are copied, since the caller's
 * array could change while the GIL is released. The module attribute CHECKS_USERS tells the
 * Python layer that these entry points reject non-finite user vectors themselves.
 */
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bindings.h"
#include "rankcore/dispatch.h"
#include "rankcore/score.h"

using rankcore::index_t;

namespace {

/// Checked inputs of score/rank; the arrays stay referenced for the duration of the call.
struct Inputs {
    carray<float> users, bias;
    TableArg table;
    carray<index_t> candidates;
    std::vector<index_t> offsets;  // a private copy: the caller's array could change while the GIL is released
    rankcore::Problem problem;
    int threads = 1;
};

Inputs convert(const py::object& users, const py::object& table, const py::object& bias, index_t dim,
               const py::object& candidates, const py::object& offsets, bool padded, index_t threads,
               const py::object& row_scale) {
    Inputs in;
    rankcore::Problem& p = in.problem;
    in.users = require_array<float>(users, "users", "float32", 2);
    in.table = require_table(table, row_scale);
    in.candidates = require_array<index_t>(candidates, "candidates", "int64", 1);
    if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
    if (in.users.shape(1) != dim)
        throw py::value_error("users has " + std::to_string(in.users.shape(1)) + " columns, expected dim=" +
                              std::to_string(dim));
    if (in.table.ref.ld < dim)
        throw py::value_error("table has " + std::to_string(in.table.ref.ld) + " columns, fewer than dim=" +
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
    p.table = in.table.ref.data;
    p.dtype = in.table.ref.dtype;
    p.row_scale = in.table.ref.row_scale;
    p.n_rows = in.table.n_rows;
    p.ld = in.table.ref.ld;
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
                const py::object& candidates, const py::object& offsets, bool padded, index_t threads,
                const py::object& row_scale) {
    Inputs in = convert(users, table, bias, dim, candidates, offsets, padded, threads, row_scale);
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
               const py::object& candidates, const py::object& offsets, bool padded, index_t k, index_t threads,
               const py::object& row_scale) {
    Inputs in = convert(users, table, bias, dim, candidates, offsets, padded, threads, row_scale);
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

}  // namespace

void bind_score(py::module_& m) {
    m.def("score", &score, py::arg("users"), py::arg("table"), py::arg("bias"), py::arg("dim"), py::arg("candidates"),
          py::arg("offsets"), py::arg("padded"), py::arg("threads"), py::arg("row_scale") = py::none(),
          R"doc(Softmax scores and logits of every candidate, in input order.

users: float32 (B, dim); table: (N, ld >= dim) float32, float16, uint16 (bfloat16 bits) or int8;
row_scale: float32 (N,) for an int8 table (logit = dot(row, user) * row_scale[r] + bias[r]), else None;
bias: None or float32 (N,);
candidates: int64 (n,); offsets: None (B == 1) or int64 (B + 1,); padded: -1 is padding;
threads: 0 = all cores. Returns (scores, logits), float32 (n,) each; padding gets 0 and -inf.)doc");
    m.def("rank", &rank, py::arg("users"), py::arg("table"), py::arg("bias"), py::arg("dim"), py::arg("candidates"),
          py::arg("offsets"), py::arg("padded"), py::arg("k"), py::arg("threads"), py::arg("row_scale") = py::none(),
          R"doc(Valid candidates of each request by descending score (ties: input order), top k (-1 = all).

Arguments as in score. Returns (positions, items, scores, logits, out_offsets): int64, int64, float32, float32 flat arrays
concatenated per request, and int64 (B + 1,) offsets into them.)doc");
    m.attr("CHECKS_USERS") = true;  // score/rank reject non-finite user vectors themselves
}
