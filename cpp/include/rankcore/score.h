/**
 * @file score.h
 * @brief Batched gather -> dot -> softmax -> sort for ranking candidate items.
 *
 * Ops: `validate_problem`, `score_batch` (scores in input order) and `rank_batch`
 * (stable descending order, optional top-k). float32 users, item tables of any storage dtype
 * (float32, float16, bfloat16, int8 with a per-row scale; quant.h), int64 ids; the ISA-specific
 * parts come from a KernelTable (dispatch.h).
 *
 * A batch holds `n_requests` requests. Request b scores candidates
 * `candidates[offsets[b] : offsets[b + 1]]` against user vector `users[b, :]`.
 * When `padded` is true the value -1 marks padding: it is not ranked, and `score_batch`
 * gives it score 0 and logit -inf.
 *
 * Numerical policy (identical in every rankcore backend):
 * - `logit_i = dot_f32(table[c_i, :dim], user) + bias[c_i]`, float32 accumulation (compressed
 *   rows are widened exactly to float32; int8: the dot times row_scale[c_i], see quant.h);
 * - all logits finite: float32 softmax with a double sum (softmax.h);
 * - otherwise the request's logits are recomputed in double; a non-finite double logit
 *   throws std::invalid_argument naming the row, else a double softmax gives the scores
 *   and the reported logits are float(double logit).
 *
 * Threads: requests are handed out in small chunks through an atomic counter to up to
 * `threads` std::threads (the calling thread is one of them). A single request, or a small
 * batch, runs on the calling thread only. The first exception thrown by a worker is kept
 * and rethrown on the calling thread after every worker has joined (parallel.h, shared with
 * the top-K scan).
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rankcore/dispatch.h"
#include "rankcore/dot.h"
#include "rankcore/parallel.h"
#include "rankcore/quant.h"
#include "rankcore/softmax.h"
#include "rankcore/sort.h"
#include "rankcore/types.h"

namespace rankcore {

/// Inputs of one batched call. All pointers are borrowed; nothing is copied.
struct Problem {
    const float* users = nullptr;         ///< (n_requests, dim) float32, row-major
    const void* table = nullptr;          ///< (n_rows, ld) elements of `dtype`, row-major
    TableDtype dtype = TableDtype::f32;   ///< storage dtype of `table` (quant.h)
    const float* row_scale = nullptr;     ///< (n_rows,) float32 per-row scale for int8, else nullptr
    index_t n_rows = 0;                   ///< rows in `table`
    index_t ld = 0;                       ///< leading dimension of `table` in elements (ld >= dim)
    index_t dim = 0;                      ///< embedding dimension (>= 1)
    const float* bias = nullptr;          ///< (n_rows,) float32, or nullptr for no bias
    const index_t* candidates = nullptr;  ///< (n_candidates,) row ids; -1 = padding when `padded`
    index_t n_candidates = 0;             ///< total candidates over all requests
    const index_t* offsets = nullptr;     ///< (n_requests + 1,) request boundaries in `candidates`
    index_t n_requests = 0;               ///< number of requests
    bool padded = false;                  ///< whether -1 in `candidates` means padding
};

/**
 * @brief Check sizes, offsets and every candidate id before any table memory is read.
 *
 * Throws std::invalid_argument for bad sizes or offsets, and std::out_of_range with the
 * message "candidate V out of range for an item table of N rows (request B, position J)"
 * for the first bad candidate in input order (J is the index within the request).
 *
 * @param p            the problem
 * @param k            results wanted per request (-1 = all); used only for `out_offsets`
 * @param out_offsets  (n_requests + 1,) int64 output or nullptr: out_offsets[b + 1] - out_offsets[b]
 *                     = min(k, valid candidates of request b)
 */
inline void validate_problem(const Problem& p, index_t k = -1, index_t* out_offsets = nullptr) {
    if (p.dim < 1) throw std::invalid_argument("dim must be >= 1, got " + std::to_string(p.dim));
    if (p.ld < p.dim)
        throw std::invalid_argument("the item table has " + std::to_string(p.ld) + " columns, fewer than dim=" +
                                    std::to_string(p.dim));
    if (p.n_rows < 0 || p.n_requests < 0 || p.n_candidates < 0)
        throw std::invalid_argument("sizes must be non-negative");
    if (k < -1) throw std::invalid_argument("k must be -1 (all) or >= 0, got " + std::to_string(k));
    if (p.offsets[0] != 0) throw std::invalid_argument("offsets[0] must be 0, got " + std::to_string(p.offsets[0]));
    for (index_t b = 0; b < p.n_requests; ++b)
        if (p.offsets[b + 1] < p.offsets[b])
            throw std::invalid_argument("offsets must be non-decreasing (offsets[" + std::to_string(b + 1) +
                                        "] < offsets[" + std::to_string(b) + "])");
    if (p.offsets[p.n_requests] != p.n_candidates)
        throw std::invalid_argument("offsets[-1] must equal len(candidates)=" + std::to_string(p.n_candidates) +
                                    ", got " + std::to_string(p.offsets[p.n_requests]));
    if (out_offsets) out_offsets[0] = 0;
    for (index_t b = 0; b < p.n_requests; ++b) {
        const index_t begin = p.offsets[b], end = p.offsets[b + 1];
        index_t n_valid = 0;
        for (index_t j = begin; j < end; ++j) {
            const index_t c = p.candidates[j];
            if (c >= 0 && c < p.n_rows) {
                ++n_valid;
            } else if (!(p.padded && c == -1)) {
                throw std::out_of_range("candidate " + std::to_string(c) + " out of range for an item table of " +
                                        std::to_string(p.n_rows) + " rows (request " + std::to_string(b) +
                                        ", position " + std::to_string(j - begin) + ")");
            }
        }
        if (out_offsets) out_offsets[b + 1] = out_offsets[b] + (k < 0 ? n_valid : std::min(k, n_valid));
    }
}

/// Per-thread scratch buffers, grown on demand and reused across requests.
struct Workspace {
    std::vector<index_t> rows;          ///< valid candidate rows of the request
    std::vector<index_t> positions;     ///< their positions within the request
    std::vector<float> logits, scores;  ///< per valid candidate
    std::vector<double> logits_f64;     ///< fallback path only
    std::vector<index_t> order;         ///< sorted indices into the valid candidates
    SortScratch sort_scratch;
};

/**
 * @brief Logits and scores of the valid candidates of request b (into `ws`).
 * @return the number of valid candidates n; ws.rows/positions/logits/scores hold n entries
 */
inline index_t score_request(const Problem& p, const KernelTable& kt, index_t b, Workspace& ws) {
    const index_t begin = p.offsets[b];
    const index_t n = p.offsets[b + 1] - begin;
    const std::size_t un = static_cast<std::size_t>(n);
    if (ws.rows.size() < un) {
        ws.rows.resize(un);
        ws.positions.resize(un);
        ws.logits.resize(un);
        ws.scores.resize(un);
    }
    const index_t* cand = p.candidates + begin;
    index_t n_valid = 0;
    for (index_t j = 0; j < n; ++j) {
        // Copied once, then only the copy is used. Checked again (free: the branch is never taken)
        // because the caller's array may be changed by another thread after validate_problem.
        const index_t c = cand[j];
        if (static_cast<std::uint64_t>(c) >= static_cast<std::uint64_t>(p.n_rows)) {
            if (p.padded && c == -1) continue;  // padding
            throw std::out_of_range("candidate " + std::to_string(c) + " out of range for an item table of " +
                                    std::to_string(p.n_rows) + " rows (request " + std::to_string(b) +
                                    ", position " + std::to_string(j) + "; changed during the call)");
        }
        ws.rows[n_valid] = c;
        ws.positions[n_valid] = j;
        ++n_valid;
    }
    const float* user = p.users + b * p.dim;
    if (p.dtype == TableDtype::f32)
        kt.gather_dot(static_cast<const float*>(p.table), p.ld, p.dim, user, ws.rows.data(), n_valid, p.bias,
                      ws.logits.data());
    else
        kt.gather_q[static_cast<int>(p.dtype)](p.table, p.ld, p.dim, user, ws.rows.data(), n_valid, p.bias,
                                               p.row_scale, ws.logits.data());
    if (kt.softmax(ws.logits.data(), n_valid, ws.scores.data())) return n_valid;

    // Some float32 logit is non-finite: redo the request in double.
    if (ws.logits_f64.size() < un) ws.logits_f64.resize(un);
    const TableRef tref{p.table, p.dtype, p.ld, p.row_scale};
    for (index_t i = 0; i < n_valid; ++i) {
        const index_t r = ws.rows[i];
        double l = row_dot_f64(tref, r, user, p.dim);
        if (p.bias) l += static_cast<double>(p.bias[r]);
        if (!std::isfinite(l))
            throw std::invalid_argument("non-finite logit for item row " + std::to_string(r) + " (request " +
                                        std::to_string(b) +
                                        "): the item table, bias or user vector contains NaN or inf");
        ws.logits_f64[i] = l;
        ws.logits[i] = static_cast<float>(l);
    }
    softmax_f64_serial(ws.logits_f64.data(), n_valid, ws.scores.data());
    return n_valid;
}

/**
 * @brief Run fn(b, workspace) for every request b on up to `threads` threads.
 * @param threads  0 = std::thread::hardware_concurrency()
 * @param work     total candidates, used to keep small batches on the calling thread
 */
template <class Fn>
void for_each_request(index_t n_requests, index_t work, int threads, Fn&& fn) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    index_t n_threads = std::min<index_t>(threads, n_requests);
    if (work < 4096) n_threads = 1;
    if (n_threads <= 1) {
        // One workspace per thread, kept between calls: a single call then allocates nothing.
        static thread_local Workspace ws;
        for (index_t b = 0; b < n_requests; ++b) fn(b, ws);
        if (ws.rows.capacity() > (std::size_t(1) << 20)) ws = Workspace();  // do not keep huge buffers
        return;
    }
    const index_t chunk = std::max<index_t>(1, std::min<index_t>(16, n_requests / (n_threads * 8)));
    parallel_chunks<Workspace>(n_requests, chunk, n_threads, fn);
}

/**
 * @brief Scores and logits of every candidate, in input order.
 * @param p           a problem that passed validate_problem
 * @param kt          kernel table (e.g. active_kernel())
 * @param out_scores  (n_candidates,) float32: softmax probability; 0 for padding
 * @param out_logits  (n_candidates,) float32: logit; -inf for padding
 * @param threads     worker threads, 0 = hardware concurrency
 */
inline void score_batch(const Problem& p, const KernelTable& kt, float* out_scores, float* out_logits,
                        int threads) {
    for_each_request(p.n_requests, p.n_candidates, threads, [&](index_t b, Workspace& ws) {
        const index_t begin = p.offsets[b];
        const index_t n = p.offsets[b + 1] - begin;
        const index_t n_valid = score_request(p, kt, b, ws);
        float* s = out_scores + begin;
        float* l = out_logits + begin;
        if (n_valid != n) {
            std::fill(s, s + n, 0.0f);
            std::fill(l, l + n, -std::numeric_limits<float>::infinity());
        }
        for (index_t i = 0; i < n_valid; ++i) {
            s[ws.positions[i]] = ws.scores[i];
            l[ws.positions[i]] = ws.logits[i];
        }
    });
}

/**
 * @brief Valid candidates of each request in descending score order (ties: input order), top k.
 * @param p              a problem that passed validate_problem
 * @param kt             kernel table
 * @param out_offsets    (n_requests + 1,) as filled by validate_problem(p, k, out_offsets); request b
 *                       gets out_offsets[b + 1] - out_offsets[b] results
 * @param out_positions  (out_offsets[n_requests],) int64: index of the candidate within its request
 * @param out_items      (out_offsets[n_requests],) int64: the candidate row id
 * @param out_scores     (out_offsets[n_requests],) float32: probability over all valid candidates
 * @param out_logits     (out_offsets[n_requests],) float32: logit
 * @param threads        worker threads, 0 = hardware concurrency
 */
inline void rank_batch(const Problem& p, const KernelTable& kt, const index_t* out_offsets,
                       index_t* out_positions, index_t* out_items, float* out_scores, float* out_logits,
                       int threads) {
    for_each_request(p.n_requests, p.n_candidates, threads, [&](index_t b, Workspace& ws) {
        const index_t n_valid = score_request(p, kt, b, ws);
        const index_t kk = out_offsets[b + 1] - out_offsets[b];
        if (kk <= 0) return;
        if (n_valid < kk)  // padding appeared after validate_problem: another thread changed the array
            throw std::invalid_argument("the candidates of request " + std::to_string(b) + " changed during the call");
        if (ws.order.size() < static_cast<std::size_t>(kk)) ws.order.resize(static_cast<std::size_t>(kk));
        order_desc_stable(ws.scores.data(), n_valid, kk, ws.order.data(), ws.sort_scratch);
        const index_t o = out_offsets[b];
        for (index_t i = 0; i < kk; ++i) {
            const index_t j = ws.order[i];
            out_positions[o + i] = ws.positions[j];
            out_items[o + i] = ws.rows[j];
            out_scores[o + i] = ws.scores[j];
            out_logits[o + i] = ws.logits[j];
        }
    });
}

}  // namespace rankcore
