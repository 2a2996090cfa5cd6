/**
 * @file topk.h
 * @brief Exact catalog-wide top-K with the softmax normaliser (streaming log-sum-exp).
 *
 * For each user vector u of a batch, over every row r of an item table:
 *
 *     logit_r = (dot_f32(table[r, :dim], u) + bias[r]) * scale          (float32)
 *     log_normalizer = log(sum_r exp(logit_r))                          (float64, over ALL rows)
 *     result = the k best allowed, not excluded rows by logit, best first
 *     score_r = exp(logit_r - log_normalizer)                           (float64)
 *
 * Rows whose `allowed` byte is 0 and rows in the user's `exclude` list are never returned but
 * still count in the normaliser: the scores are the top of a distribution over the whole catalog.
 *
 * Ops, dtypes and ISAs (TopKKernels, one table per ISA, reached through dispatch.h):
 *
 * | op           | what                                                   | ISAs          |
 * |--------------|--------------------------------------------------------|---------------|
 * | block_logits | logits of a block of consecutive rows for a tile of users | serial, avx2 |
 * | lse_update   | fold a block of logits into a running (max, sum)       | serial, avx2  |
 * | above        | positions of the logits at or above a threshold        | serial, avx2  |
 * | stream_logits| logits of one user over 4 runs of rows read side by side | serial, avx2 |
 * | stream_logits_q | the same over float16, bfloat16, int8 rows            | avx2          |
 *
 * Compressed tables (float16, bfloat16, int8; quant.h): for a tile of users each block of rows is
 * first widened into a float32 scratch block (int8 rows times their scale), which the float32
 * block kernel then reads from cache; one user's AVX2 scan widens in registers (stream_logits_q,
 * the same operations, so the same logits). The table stream itself is 2-4x fewer bytes.
 *
 * One user (a float32 table, or a compressed one on AVX2): the thread's rows are cut into
 * topk_streams runs read side by side, row i of every run in the same step (the four lanes of
 * one reduce4). A single sequential stream
 * leaves the core waiting on the hardware prefetcher; four keep more line fills in flight (2M x 64,
 * one thread, AMD Zen 3: one stream with software prefetch 46 ms, one stream without it 36 ms,
 * four streams 30 ms; software prefetch only slowed the stream and was removed). Rows are then
 * met out of catalog order, so candidates are taken at or above the worst kept logit and the
 * order rule settles ties.
 *
 * Streaming: the table is read in blocks of consecutive rows sized to stay in L1/L2; a block's
 * logits (users x rows, a few KiB) are the only logits ever stored, never an N-length array. For
 * a tile of users the block is reused from cache (a register-tiled product: each AVX2 micro-kernel
 * call computes MR users x 4 rows with MR x 4 eight-lane FMA accumulators, reading both operands
 * row-major as stored, so nothing is packed or transposed).
 *
 * Numerical policy:
 * - Dot products accumulate in float32. Every (user, row) pair is summed in the same order by
 *   every tile shape (8 lane sums over the dimension, then the fixed tree
 *   ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))), so a row's logit does not depend on its position, on
 *   the batch it is in or on the thread count: equal rows give exactly equal logits, and a batch
 *   returns the same rows and logits as single calls. The normaliser's float32 terms are taken
 *   against a running max that depends on the block split, so it may differ by float32 rounding
 *   (about 1e-8) between a batch, a single call and different thread counts.
 * - Log-sum-exp: running max m (float32) and sum s (float64); a block with a larger max rescales s
 *   by exp(m_old - m_new) in double; terms exp(l - m) are float32 (softmax.h's AVX2 exp, about
 *   1 ulp; std::exp on the serial kernel) summed in double. log_normalizer = m + log(s).
 * - Order: descending logit; equal logits in catalog order (lower row first). Deterministic.
 * - A non-finite float32 logit (float32 overflow of a finite table and user) makes that user's
 *   request be recomputed in double on one thread: double dot products, double log-sum-exp, the
 *   same order rule on the double logits; reported logits are float(double logit) (they may be
 *   +-inf when beyond float32 range) while scores and log_normalizer stay finite.
 *   A non-finite double logit (NaN or inf in the inputs) throws std::invalid_argument.
 *
 * Threads: work is a grid of (user chunk, row range) cells handed out through an atomic counter.
 * A big batch is split across users only (each chunk streams the whole table); a small batch or a
 * single user is also split into row ranges whose partial top-K lists and (max, sum) pairs are
 * merged afterwards (the merge keeps the order rule, so results do not depend on the split).
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rankcore/dispatch.h"
#include "rankcore/dot.h"
#include "rankcore/parallel.h"
#include "rankcore/quant.h"
#include "rankcore/softmax.h"
#include "rankcore/types.h"

namespace rankcore {

/// The per-ISA operations of the top-K scan (see the table at the top of this file).
struct TopKKernels {
    /**
     * Logits of `n` consecutive rows for `n_users` users:
     * out[u * ldo + i] = (dot(rows + i * ld, users + u * ldu, dim) + (bias ? bias[i] : 0)) * scale.
     * Reads only the first `dim` floats of every row and user.
     */
    void (*block_logits)(const float* rows, index_t ld, index_t dim, index_t n, const float* bias,
                         const float* users, index_t ldu, index_t n_users, float scale, float* out, index_t ldo);
    /// Fold n logits into the running (max, sum); false (state unspecified) if one is not finite.
    bool (*lse_update)(const float* logits, index_t n, float* max, double* sum);
    /// Write the positions i (ascending) with logits[i] >= threshold to idx; return their count.
    index_t (*above)(const float* logits, index_t n, float threshold, std::int32_t* idx);
    /**
     * One user, `topk_streams` runs of consecutive rows read side by side: run s has n[s] rows
     * from rows[s] (bias[s] or nullptr) and its logits go to out + s * ldo. Each row's logit is
     * the one block_logits gives it (same operations in the same order).
     */
    void (*stream_logits)(const float* const* rows, const index_t* n, index_t ld, index_t dim,
                          const float* const* bias, const float* user, float scale, float* out, index_t ldo);
    /**
     * stream_logits over a compressed table, indexed by TableDtype (nullptr: none, the scan widens
     * blocks into float32 first). rows[s] points at the first stored row of run s, row_scale[s] at
     * its first int8 scale (nullptr for float16/bfloat16). Each element is widened and multiplied
     * by its row's scale before the FMA, exactly as the widened block would be, so a row's logit is
     * bitwise the one block_logits gives its widened row.
     */
    void (*stream_logits_q[n_table_dtypes])(const void* const* rows, const index_t* n, index_t ld, index_t dim,
                                            const float* const* bias, const float* const* row_scale,
                                            const float* user, float scale, float* out, index_t ldo);
};

/// Runs of rows one thread reads side by side when it scans for a single user: several sequential
/// streams keep more cache-line fills in flight than one (measured: 1.3x the one-stream read).
constexpr int topk_streams = 4;

namespace topk_detail {

inline void block_logits_serial(const float* rows, index_t ld, index_t dim, index_t n, const float* bias,
                                const float* users, index_t ldu, index_t n_users, float scale, float* out,
                                index_t ldo) noexcept {
    for (index_t u = 0; u < n_users; ++u)
        for (index_t i = 0; i < n; ++i) {
            float l = dot_f32_serial(rows + i * ld, users + u * ldu, static_cast<std::size_t>(dim));
            if (bias) l += bias[i];
            out[u * ldo + i] = l * scale;
        }
}

inline bool lse_update_serial(const float* l, index_t n, float* pm, double* ps) noexcept {
    if (n <= 0) return true;
    float bm = -std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < n; ++i) {
        if (!std::isfinite(l[i])) return false;
        bm = l[i] > bm ? l[i] : bm;
    }
    if (bm > *pm) {
        *ps *= std::exp(static_cast<double>(*pm) - static_cast<double>(bm));
        *pm = bm;
    }
    const float m = *pm;
    double s = 0.0;
    for (index_t i = 0; i < n; ++i) s += static_cast<double>(std::exp(l[i] - m));
    *ps += s;
    return true;
}

inline index_t above_serial(const float* l, index_t n, float thr, std::int32_t* idx) noexcept {
    index_t c = 0;
    for (index_t i = 0; i < n; ++i)
        if (l[i] >= thr) idx[c++] = static_cast<std::int32_t>(i);
    return c;
}

inline void stream_logits_serial(const float* const* rows, const index_t* n, index_t ld, index_t dim,
                                 const float* const* bias, const float* user, float scale, float* out,
                                 index_t ldo) noexcept {
    for (int s = 0; s < topk_streams; ++s)
        block_logits_serial(rows[s], ld, dim, n[s], bias[s], user, dim, 1, scale, out + s * ldo, ldo);
}

#if defined(RANKCORE_X86_64)

/// [sum(a0), sum(a1), sum(a2), sum(a3)], each lane summed as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
RANKCORE_TARGET_AVX2 inline __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) noexcept {
    const __m256 g = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(g), _mm256_extractf128_ps(g, 1));
}

/**
 * MR users x 4 rows per step, MR x 4 accumulators. Rows past n repeat row n - 1 (valid memory,
 * results dropped), so every row goes through the same code and gets the same summation order.
 */
template <int MR>
RANKCORE_TARGET_AVX2 void block_logits_avx2_mr(const float* rows, index_t ld, index_t dim, index_t n,
                                               const float* bias, const float* users, index_t ldu, float scale,
                                               float* out, index_t ldo) noexcept {
    const index_t body = dim & ~index_t(7);
    const std::size_t tail = static_cast<std::size_t>(dim - body);
    const __m256i mask = detail::avx2_tail_mask(tail);
    const __m128 vscale = _mm_set1_ps(scale);
    for (index_t i = 0; i < n; i += 4) {
        const float* r0 = rows + i * ld;
        const float* r1 = rows + std::min(i + 1, n - 1) * ld;
        const float* r2 = rows + std::min(i + 2, n - 1) * ld;
        const float* r3 = rows + std::min(i + 3, n - 1) * ld;
        __m256 acc[MR][4];
        for (int u = 0; u < MR; ++u)
            for (int q = 0; q < 4; ++q) acc[u][q] = _mm256_setzero_ps();
        for (index_t t = 0; t < body; t += 8) {
            __m256 uv[MR];
            for (int u = 0; u < MR; ++u) uv[u] = _mm256_loadu_ps(users + u * ldu + t);
            const __m256 x0 = _mm256_loadu_ps(r0 + t);
            for (int u = 0; u < MR; ++u) acc[u][0] = _mm256_fmadd_ps(x0, uv[u], acc[u][0]);
            const __m256 x1 = _mm256_loadu_ps(r1 + t);
            for (int u = 0; u < MR; ++u) acc[u][1] = _mm256_fmadd_ps(x1, uv[u], acc[u][1]);
            const __m256 x2 = _mm256_loadu_ps(r2 + t);
            for (int u = 0; u < MR; ++u) acc[u][2] = _mm256_fmadd_ps(x2, uv[u], acc[u][2]);
            const __m256 x3 = _mm256_loadu_ps(r3 + t);
            for (int u = 0; u < MR; ++u) acc[u][3] = _mm256_fmadd_ps(x3, uv[u], acc[u][3]);
        }
        if (tail) {  // masked loads never touch the lanes past dim
            __m256 uv[MR];
            for (int u = 0; u < MR; ++u) uv[u] = _mm256_maskload_ps(users + u * ldu + body, mask);
            const __m256 x0 = _mm256_maskload_ps(r0 + body, mask);
            const __m256 x1 = _mm256_maskload_ps(r1 + body, mask);
            const __m256 x2 = _mm256_maskload_ps(r2 + body, mask);
            const __m256 x3 = _mm256_maskload_ps(r3 + body, mask);
            for (int u = 0; u < MR; ++u) {
                acc[u][0] = _mm256_fmadd_ps(x0, uv[u], acc[u][0]);
                acc[u][1] = _mm256_fmadd_ps(x1, uv[u], acc[u][1]);
                acc[u][2] = _mm256_fmadd_ps(x2, uv[u], acc[u][2]);
                acc[u][3] = _mm256_fmadd_ps(x3, uv[u], acc[u][3]);
            }
        }
        const index_t m = std::min<index_t>(4, n - i);
        for (int u = 0; u < MR; ++u) {
            __m128 s = reduce4(acc[u][0], acc[u][1], acc[u][2], acc[u][3]);
            float* o = out + u * ldo + i;
            if (m == 4) {
                if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias + i));
                _mm_storeu_ps(o, _mm_mul_ps(s, vscale));
            } else {  // same two float32 operations, one lane at a time
                alignas(16) float tmp[4];
                _mm_store_ps(tmp, s);
                for (index_t q = 0; q < m; ++q) o[q] = (bias ? tmp[q] + bias[i + q] : tmp[q]) * scale;
            }
        }
    }
}

RANKCORE_TARGET_AVX2 inline void block_logits_avx2(const float* rows, index_t ld, index_t dim, index_t n,
                                                   const float* bias, const float* users, index_t ldu,
                                                   index_t n_users, float scale, float* out, index_t ldo) noexcept {
    constexpr index_t MR = 3;
    index_t u = 0;
    for (; u + MR <= n_users; u += MR)
        block_logits_avx2_mr<MR>(rows, ld, dim, n, bias, users + u * ldu, ldu, scale, out + u * ldo, ldo);
    if (n_users - u == 2)
        block_logits_avx2_mr<2>(rows, ld, dim, n, bias, users + u * ldu, ldu, scale, out + u * ldo, ldo);
    else if (n_users - u == 1)
        block_logits_avx2_mr<1>(rows, ld, dim, n, bias, users + u * ldu, ldu, scale, out + u * ldo, ldo);
}

RANKCORE_TARGET_AVX2 inline bool lse_update_avx2(const float* l, index_t n, float* pm, double* ps) noexcept {
    if (n <= 0) return true;
    const std::size_t un = static_cast<std::size_t>(n);
    const std::size_t body = un & ~std::size_t(7);
    const std::size_t tail = un - body;
    const __m256i tail_mask = detail::avx2_tail_mask(tail);
    const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    const __m256 zero = _mm256_setzero_ps();
    // Pass 1: the block max, and x * 0 summed (0 when every x is finite, NaN otherwise).
    __m256 vmax = neg_inf, vbad = zero;
    for (std::size_t i = 0; i < body; i += 8) {
        const __m256 x = _mm256_loadu_ps(l + i);
        vmax = _mm256_max_ps(vmax, x);
        vbad = _mm256_add_ps(vbad, _mm256_mul_ps(x, zero));
    }
    if (tail) {
        const __m256 x = _mm256_maskload_ps(l + body, tail_mask);
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, x, _mm256_castsi256_ps(tail_mask)));
        vbad = _mm256_add_ps(vbad, _mm256_mul_ps(x, zero));
    }
    if (detail::avx2_hsum(vbad) != 0.0f) return false;  // NaN != 0
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float bm = _mm_cvtss_f32(m4);
    if (bm > *pm) {
        *ps *= std::exp(static_cast<double>(*pm) - static_cast<double>(bm));
        *pm = bm;
    }
    // Pass 2: exp(l - m) in float32, summed in double.
    const __m256 vm = _mm256_set1_ps(*pm);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (std::size_t i = 0; i < body; i += 8) {
        const __m256 e = exp_f32_avx2(_mm256_sub_ps(_mm256_loadu_ps(l + i), vm));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (tail) {
        __m256 e = exp_f32_avx2(_mm256_sub_ps(_mm256_maskload_ps(l + body, tail_mask), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(tail_mask));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    const __m256d sv = _mm256_add_pd(s0, s1);
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(sv), _mm256_extractf128_pd(sv, 1));
    s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
    *ps += _mm_cvtsd_f64(s2);
    return true;
}

RANKCORE_TARGET_AVX2 inline index_t above_avx2(const float* l, index_t n, float thr, std::int32_t* idx) noexcept {
    const __m256 vt = _mm256_set1_ps(thr);
    index_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        unsigned bits = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(l + i), vt, _CMP_GE_OQ)));
        while (bits) {
            idx[c++] = static_cast<std::int32_t>(i + __builtin_ctz(bits));
            bits &= bits - 1;
        }
    }
    for (; i < n; ++i)
        if (l[i] >= thr) idx[c++] = static_cast<std::int32_t>(i);
    return c;
}

/**
 * One user over topk_streams (= 4) runs: step i reads row i of every run, so the four rows of a
 * step are the four lanes of reduce4, exactly as four consecutive rows are in block_logits_avx2_mr.
 * A run shorter than the longest repeats its last row (results dropped); an empty run reads row 0
 * of run 0, which is never empty.
 */
RANKCORE_TARGET_AVX2 inline void stream_logits_avx2(const float* const* rows, const index_t* n, index_t ld, index_t dim,
                                             const float* const* bias, const float* user, float scale,
                                             float* out, index_t ldo) noexcept {
    static_assert(topk_streams == 4, "one reduce4 lane per stream");
    const index_t body = dim & ~index_t(7);
    const std::size_t tail = static_cast<std::size_t>(dim - body);
    const __m256i mask = detail::avx2_tail_mask(tail);
    const index_t steps = std::max(std::max(n[0], n[1]), std::max(n[2], n[3]));
    for (index_t i = 0; i < steps; ++i) {
        const float* r[4];
        for (int s = 0; s < 4; ++s) r[s] = n[s] > 0 ? rows[s] + std::min(i, n[s] - 1) * ld : rows[0];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (index_t t = 0; t < body; t += 8) {
            const __m256 uv = _mm256_loadu_ps(user + t);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r[0] + t), uv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r[1] + t), uv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r[2] + t), uv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r[3] + t), uv, a3);
        }
        if (tail) {  // masked loads never touch the lanes past dim
            const __m256 uv = _mm256_maskload_ps(user + body, mask);
            a0 = _mm256_fmadd_ps(_mm256_maskload_ps(r[0] + body, mask), uv, a0);
            a1 = _mm256_fmadd_ps(_mm256_maskload_ps(r[1] + body, mask), uv, a1);
            a2 = _mm256_fmadd_ps(_mm256_maskload_ps(r[2] + body, mask), uv, a2);
            a3 = _mm256_fmadd_ps(_mm256_maskload_ps(r[3] + body, mask), uv, a3);
        }
        alignas(16) float l[4];
        _mm_store_ps(l, reduce4(a0, a1, a2, a3));
        for (int s = 0; s < 4; ++s)  // same two float32 operations as block_logits: (dot + bias) * scale
            if (i < n[s]) out[s * ldo + i] = (bias[s] ? l[s] + bias[s][i] : l[s]) * scale;
    }
}

/// stream_logits_avx2 over a compressed table (see TopKKernels::stream_logits_q).
template <class W>
RANKCORE_TARGET_AVX2 inline void stream_logits_q_avx2(const void* const* rows, const index_t* n, index_t ld,
                                                      index_t dim, const float* const* bias,
                                                      const float* const* row_scale, const float* user,
                                                      float scale, float* out, index_t ldo) noexcept {
    using T = typename W::T;
    const index_t body = dim & ~index_t(7);
    const std::size_t tail = static_cast<std::size_t>(dim - body);
    const __m256i mask = detail::avx2_tail_mask(tail);
    const index_t steps = std::max(std::max(n[0], n[1]), std::max(n[2], n[3]));
    const __m256 one = _mm256_set1_ps(1.0f);
    for (index_t i = 0; i < steps; ++i) {
        const T* r[4];
        __m256 sc[4];
        for (int s = 0; s < 4; ++s) {
            const index_t j = n[s] > 0 ? std::min(i, n[s] - 1) : 0;
            r[s] = static_cast<const T*>(n[s] > 0 ? rows[s] : rows[0]) + j * ld;
            sc[s] = row_scale[s] && n[s] > 0 ? _mm256_set1_ps(row_scale[s][j]) : one;
        }
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (index_t t = 0; t < body; t += 8) {
            const __m256 uv = _mm256_loadu_ps(user + t);
            a0 = _mm256_fmadd_ps(_mm256_mul_ps(W::load8(r[0] + t), sc[0]), uv, a0);
            a1 = _mm256_fmadd_ps(_mm256_mul_ps(W::load8(r[1] + t), sc[1]), uv, a1);
            a2 = _mm256_fmadd_ps(_mm256_mul_ps(W::load8(r[2] + t), sc[2]), uv, a2);
            a3 = _mm256_fmadd_ps(_mm256_mul_ps(W::load8(r[3] + t), sc[3]), uv, a3);
        }
        if (tail) {  // lanes past dim widen to 0 and meet a masked (0) user lane, as in the block path
            const __m256 uv = _mm256_maskload_ps(user + body, mask);
            a0 = _mm256_fmadd_ps(_mm256_mul_ps(detail::avx2_load_tail<W>(r[0] + body, tail), sc[0]), uv, a0);
            a1 = _mm256_fmadd_ps(_mm256_mul_ps(detail::avx2_load_tail<W>(r[1] + body, tail), sc[1]), uv, a1);
            a2 = _mm256_fmadd_ps(_mm256_mul_ps(detail::avx2_load_tail<W>(r[2] + body, tail), sc[2]), uv, a2);
            a3 = _mm256_fmadd_ps(_mm256_mul_ps(detail::avx2_load_tail<W>(r[3] + body, tail), sc[3]), uv, a3);
        }
        alignas(16) float l[4];
        _mm_store_ps(l, reduce4(a0, a1, a2, a3));
        for (int s = 0; s < 4; ++s)
            if (i < n[s]) out[s * ldo + i] = (bias[s] ? l[s] + bias[s][i] : l[s]) * scale;
    }
}

#endif  // RANKCORE_X86_64

}  // namespace topk_detail

inline const TopKKernels topk_kernels_serial = {&topk_detail::block_logits_serial, &topk_detail::lse_update_serial,
                                                &topk_detail::above_serial, &topk_detail::stream_logits_serial,
                                                {nullptr, nullptr, nullptr, nullptr}};
#if defined(RANKCORE_X86_64)
inline const TopKKernels topk_kernels_avx2 = {&topk_detail::block_logits_avx2, &topk_detail::lse_update_avx2,
                                              &topk_detail::above_avx2, &topk_detail::stream_logits_avx2,
                                              {nullptr, &topk_detail::stream_logits_q_avx2<detail::Avx2WidenF16>,
                                               &topk_detail::stream_logits_q_avx2<detail::Avx2WidenBF16>,
                                               &topk_detail::stream_logits_q_avx2<detail::Avx2WidenI8>}};
#endif

/// Inputs of one top-K call. All pointers are borrowed; nothing is copied.
struct TopKProblem {
    const float* users = nullptr;             ///< (n_users, dim) float32, row-major
    index_t n_users = 0;                      ///< number of user vectors (requests)
    index_t dim = 0;                          ///< embedding dimension (>= 1)
    const void* table = nullptr;              ///< (n_rows, ld) elements of `dtype`, row-major; only [:, :dim] is read
    TableDtype dtype = TableDtype::f32;       ///< storage dtype of `table` (quant.h)
    const float* row_scale = nullptr;         ///< (n_rows,) float32 per-row scale for int8, else nullptr
    index_t n_rows = 0;                       ///< rows in `table` (>= 1)
    index_t ld = 0;                           ///< leading dimension of `table` in elements (>= dim)
    const float* bias = nullptr;              ///< (n_rows,) float32 or nullptr
    const std::uint8_t* allowed = nullptr;    ///< nullptr (all allowed), or 0 = never returned
    bool allowed_per_user = false;            ///< false: (n_rows,) for every user; true: (n_users, n_rows)
    const index_t* exclude = nullptr;         ///< excluded rows (never returned), each in [0, n_rows)
    const index_t* exclude_offsets = nullptr; ///< (n_users + 1,) CSR bounds into `exclude`, or nullptr:
                                              ///< every user excludes exclude[0 : n_exclude]
    index_t n_exclude = 0;                    ///< entries in `exclude`
    float scale = 1.0f;                       ///< multiplies every logit (finite)
    index_t k = 1;                            ///< results wanted per user (>= 1)
};

/// Caller-allocated outputs, (n_users, k) row-major unless stated.
struct TopKOutput {
    index_t* rows = nullptr;            ///< best first; -1 past the user's count
    float* logits = nullptr;            ///< -inf past the count
    double* scores = nullptr;           ///< exp(logit - log_normalizer); 0 past the count
    index_t* counts = nullptr;          ///< (n_users,) results per user: min(k, allowed and not excluded rows)
    double* log_normalizer = nullptr;   ///< (n_users,) log(sum over ALL rows of exp(logit))
};

/**
 * @brief Check sizes, k, scale, the user vectors and every excluded row before any table memory is read.
 * Throws std::invalid_argument for bad sizes or values and std::out_of_range for an excluded row
 * outside [0, n_rows).
 */
inline void validate_topk(const TopKProblem& p) {
    if (p.dim < 1) throw std::invalid_argument("dim must be >= 1, got " + std::to_string(p.dim));
    if (p.ld < p.dim)
        throw std::invalid_argument("the item table has " + std::to_string(p.ld) + " columns, fewer than dim=" +
                                    std::to_string(p.dim));
    if (p.n_rows < 1) throw std::invalid_argument("the item table has no rows");
    if (p.n_users < 0 || p.n_exclude < 0) throw std::invalid_argument("sizes must be non-negative");
    if (p.k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(p.k));
    if (!std::isfinite(p.scale)) throw std::invalid_argument("scale must be finite");
    for (index_t i = 0; i < p.n_users * p.dim; ++i)
        if (!std::isfinite(p.users[i]))
            throw std::invalid_argument("user vector " + std::to_string(i / p.dim) +
                                        " contains NaN or inf (or values beyond float32 range)");
    if (p.exclude_offsets) {
        if (p.exclude_offsets[0] != 0 || p.exclude_offsets[p.n_users] != p.n_exclude)
            throw std::invalid_argument("exclude offsets must start at 0 and end at len(exclude)=" +
                                        std::to_string(p.n_exclude));
        for (index_t b = 0; b < p.n_users; ++b)
            if (p.exclude_offsets[b + 1] < p.exclude_offsets[b])
                throw std::invalid_argument("exclude offsets must be non-decreasing");
    }
    for (index_t j = 0; j < p.n_exclude; ++j)
        if (p.exclude[j] < 0 || p.exclude[j] >= p.n_rows)
            throw std::out_of_range("excluded row " + std::to_string(p.exclude[j]) +
                                    " out of range for an item table of " + std::to_string(p.n_rows) + " rows");
}

namespace topk_detail {

/// A result candidate; `better` is the order of results (higher logit, then lower row).
template <class L>
struct Entry {
    L logit;
    index_t row;
};
template <class L>
inline bool better(const Entry<L>& a, const Entry<L>& b) noexcept {
    return a.logit > b.logit || (a.logit == b.logit && a.row < b.row);
}

/// Top-K of one (user, row range): a heap whose front is the worst kept entry, plus the running LSE.
struct Partial {
    std::vector<Entry<float>> heap;
    float max = -std::numeric_limits<float>::infinity();
    double sum = 0.0;
    bool overflow = false;  ///< a float32 logit was not finite: the user is recomputed in double
};

/// Excluded rows of each user, sorted (a private copy: the caller's array is read once).
struct Excludes {
    std::vector<index_t> rows, offsets;
    bool shared = true;
    Excludes(const TopKProblem& p) {
        if (p.exclude_offsets) {
            shared = false;
            offsets.assign(p.exclude_offsets, p.exclude_offsets + p.n_users + 1);
        } else {
            offsets = {0, p.n_exclude};
        }
        rows.assign(p.exclude, p.exclude + p.n_exclude);
        for (std::size_t b = 0; b + 1 < offsets.size(); ++b)
            std::sort(rows.begin() + offsets[b], rows.begin() + offsets[b + 1]);
    }
    bool contains(index_t user, index_t row) const noexcept {
        const index_t b = shared ? 0 : user;
        const auto first = rows.begin() + offsets[b], last = rows.begin() + offsets[b + 1];
        return first != last && std::binary_search(first, last, row);
    }
};

/// Whether `row` may be returned to `user`.
inline bool eligible(const TopKProblem& p, const Excludes& ex, index_t user, index_t row) noexcept {
    if (p.allowed && !p.allowed[(p.allowed_per_user ? user * p.n_rows : 0) + row]) return false;
    return !ex.contains(user, row);
}

/// Offer an eligible candidate to a bounded heap of at most k entries.
template <class L>
inline void offer(std::vector<Entry<L>>& heap, index_t k, Entry<L> e) {
    const auto cmp = [](const Entry<L>& a, const Entry<L>& b) { return better(a, b); };
    if (static_cast<index_t>(heap.size()) < k) {
        heap.push_back(e);
        std::push_heap(heap.begin(), heap.end(), cmp);
    } else if (better(e, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), cmp);
        heap.back() = e;
        std::push_heap(heap.begin(), heap.end(), cmp);
    }
}

/// Per-thread scratch of the scan: one block of logits per user of a chunk, and candidate positions.
struct ScanScratch {
    std::vector<float> logits;
    std::vector<float> rows;  ///< a dequantised block of a compressed table
    std::vector<std::int32_t> idx;
};

/**
 * Scan rows [row_begin, row_end) for users [u_begin, u_end), updating parts[u * n_ranges + range].
 * Block: `block_rows` rows; all users of the chunk read a block while it is in cache.
 */
/// Fold the logits of rows [r0, r0 + n) of one user into its partial (LSE, then candidates).
inline void fold_block(const TopKProblem& p, const TopKKernels& kk, const Excludes& ex, index_t user, const float* l,
                       index_t r0, index_t n, Partial& part, ScanScratch& sc) {
    if (part.overflow || n <= 0) return;
    if (!kk.lse_update(l, n, &part.max, &part.sum)) {
        part.overflow = true;
        return;
    }
    // Candidates at or above the worst kept logit: a row scanned out of catalog order (another
    // stream or range) may tie it and still win on its lower row.
    const float thr = static_cast<index_t>(part.heap.size()) < p.k ? -std::numeric_limits<float>::infinity()
                                                                   : part.heap.front().logit;
    const index_t c = kk.above(l, n, thr, sc.idx.data());
    for (index_t j = 0; j < c; ++j) {
        const index_t i = sc.idx[static_cast<std::size_t>(j)];
        if (eligible(p, ex, user, r0 + i)) offer(part.heap, p.k, Entry<float>{l[i], r0 + i});
    }
}

/**
 * One user: rows [row_begin, row_end) split into topk_streams runs read side by side,
 * `block_rows` rows of each run per step. float32 tables, and compressed ones whose dtype has a
 * stream_logits_q kernel (scan_cell checks).
 */
inline void scan_streams(const TopKProblem& p, const TopKKernels& kk, const Excludes& ex, index_t user,
                         index_t row_begin, index_t row_end, index_t block_rows, Partial& part, ScanScratch& sc) {
    constexpr int S = topk_streams;
    sc.logits.resize(static_cast<std::size_t>(S * block_rows));
    sc.idx.resize(static_cast<std::size_t>(block_rows));
    const index_t run = (row_end - row_begin + S - 1) / S;
    const TableRef tref{p.table, p.dtype, p.ld, p.row_scale};
    const auto stream_q = kk.stream_logits_q[static_cast<int>(p.dtype)];
    for (index_t off = 0; off < run; off += block_rows) {
        const void* rows[S];
        const float* bias[S];
        const float* scales[S];
        index_t start[S], n[S];
        for (int s = 0; s < S; ++s) {
            start[s] = row_begin + s * run + off;
            n[s] = std::max<index_t>(0, std::min({block_rows, run - off, row_end - start[s]}));
            const index_t first = std::min(start[s], row_end - 1);
            rows[s] = tref.row(first);
            bias[s] = p.bias ? p.bias + first : nullptr;
            scales[s] = p.row_scale ? p.row_scale + first : nullptr;
        }
        const float* user_vec = p.users + user * p.dim;
        if (p.dtype == TableDtype::f32) {
            const float* frows[S];
            for (int s = 0; s < S; ++s) frows[s] = static_cast<const float*>(rows[s]);
            kk.stream_logits(frows, n, p.ld, p.dim, bias, user_vec, p.scale, sc.logits.data(), block_rows);
        } else {
            stream_q(rows, n, p.ld, p.dim, bias, scales, user_vec, p.scale, sc.logits.data(), block_rows);
        }
        for (int s = 0; s < S; ++s) fold_block(p, kk, ex, user, sc.logits.data() + s * block_rows, start[s], n[s], part, sc);
    }
}

inline void scan_cell(const TopKProblem& p, const TopKKernels& kk, DequantFn dequant, const Excludes& ex,
                      index_t u_begin,
                      index_t u_end, index_t row_begin, index_t row_end, index_t range, index_t n_ranges,
                      index_t block_rows, std::vector<Partial>& parts, ScanScratch& sc) {
    const index_t n_users = u_end - u_begin;
    if (n_users == 1 && (p.dtype == TableDtype::f32 || kk.stream_logits_q[static_cast<int>(p.dtype)])) {
        scan_streams(p, kk, ex, u_begin, row_begin, row_end, block_rows / topk_streams,
                     parts[static_cast<std::size_t>(u_begin * n_ranges + range)], sc);
        return;
    }
    sc.logits.resize(static_cast<std::size_t>(n_users * block_rows));
    sc.idx.resize(static_cast<std::size_t>(block_rows));
    const bool compressed = p.dtype != TableDtype::f32;
    const index_t ldq = (p.dim + 15) & ~index_t(15);  // a dequantised row: dim floats, 64-byte multiple
    if (compressed) sc.rows.resize(static_cast<std::size_t>(block_rows * ldq));
    const TableRef tref{p.table, p.dtype, p.ld, p.row_scale};
    for (index_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
        const index_t n = std::min(block_rows, row_end - r0);
        const float* block = compressed ? sc.rows.data() : static_cast<const float*>(p.table) + r0 * p.ld;
        if (compressed)  // widen the block once (exact, times the row scale for int8); it stays in cache
            dequant(tref.row(r0), p.ld, p.dim, n, p.row_scale ? p.row_scale + r0 : nullptr, sc.rows.data(), ldq);
        kk.block_logits(block, compressed ? ldq : p.ld, p.dim, n, p.bias ? p.bias + r0 : nullptr,
                        p.users + u_begin * p.dim, p.dim, n_users, p.scale, sc.logits.data(), block_rows);
        for (index_t u = 0; u < n_users; ++u)
            fold_block(p, kk, ex, u_begin + u, sc.logits.data() + u * block_rows, r0, n,
                       parts[static_cast<std::size_t>((u_begin + u) * n_ranges + range)], sc);
    }
}

/// Recompute one user entirely in double (after a float32 overflow); writes the user's outputs.
inline void user_in_double(const TopKProblem& p, const Excludes& ex, index_t user, const TopKOutput& out) {
    const float* u = p.users + user * p.dim;
    std::vector<Entry<double>> heap;
    double m = -std::numeric_limits<double>::infinity(), s = 0.0;
    const TableRef tref{p.table, p.dtype, p.ld, p.row_scale};
    for (index_t r = 0; r < p.n_rows; ++r) {
        double l = row_dot_f64(tref, r, u, p.dim);
        if (p.bias) l += static_cast<double>(p.bias[r]);
        l *= static_cast<double>(p.scale);
        if (!std::isfinite(l))
            throw std::invalid_argument("non-finite logit for item row " + std::to_string(r) + " (user " +
                                        std::to_string(user) +
                                        "): the item table, bias or user vector contains NaN or inf");
        if (l > m) {
            s = s * std::exp(m - l) + 1.0;
            m = l;
        } else {
            s += std::exp(l - m);
        }
        if (eligible(p, ex, user, r)) offer(heap, p.k, Entry<double>{l, r});
    }
    std::sort(heap.begin(), heap.end(), better<double>);
    const double lse = m + std::log(s);
    const index_t c = static_cast<index_t>(heap.size());
    for (index_t j = 0; j < c; ++j) {
        out.rows[user * p.k + j] = heap[j].row;
        out.logits[user * p.k + j] = static_cast<float>(heap[j].logit);
        out.scores[user * p.k + j] = std::exp(heap[j].logit - lse);
    }
    out.counts[user] = c;
    out.log_normalizer[user] = lse;
}

/// Merge the partials of one user (in row-range order) into its outputs; false if one overflowed.
inline bool merge_user(const TopKProblem& p, index_t user, index_t n_ranges, std::vector<Partial>& parts,
                       std::vector<Entry<float>>& all, const TopKOutput& out) {
    all.clear();
    float m = -std::numeric_limits<float>::infinity();
    for (index_t r = 0; r < n_ranges; ++r) {
        const Partial& part = parts[static_cast<std::size_t>(user * n_ranges + r)];
        if (part.overflow) return false;
        m = std::max(m, part.max);
        all.insert(all.end(), part.heap.begin(), part.heap.end());
    }
    double s = 0.0;
    for (index_t r = 0; r < n_ranges; ++r) {
        const Partial& part = parts[static_cast<std::size_t>(user * n_ranges + r)];
        if (part.sum > 0.0) s += part.sum * std::exp(static_cast<double>(part.max) - static_cast<double>(m));
    }
    const index_t c = std::min<index_t>(p.k, static_cast<index_t>(all.size()));
    std::partial_sort(all.begin(), all.begin() + c, all.end(), better<float>);
    const double lse = static_cast<double>(m) + std::log(s);
    for (index_t j = 0; j < c; ++j) {
        out.rows[user * p.k + j] = all[j].row;
        out.logits[user * p.k + j] = all[j].logit;
        out.scores[user * p.k + j] = std::exp(static_cast<double>(all[j].logit) - lse);
    }
    out.counts[user] = c;
    out.log_normalizer[user] = lse;
    return true;
}

}  // namespace topk_detail

/// Users per chunk of the batched scan: a chunk's vectors stay in L1/L2 while it streams the table.
constexpr index_t topk_user_chunk = 48;
/// Rows of a row range are at least this many floats, so a thread's share is worth starting it for.
constexpr index_t topk_min_range_floats = index_t(1) << 18;

/**
 * @brief Exact top-K rows and log-normaliser of every user of the problem.
 * @param p        a problem that passed validate_topk
 * @param kt       kernel table (its `topk` entry is used)
 * @param out      caller-allocated outputs, see TopKOutput
 * @param threads  worker threads, 0 = hardware concurrency
 */
inline void topk_batch(const TopKProblem& p, const KernelTable& kt, const TopKOutput& out, int threads) {
    using namespace topk_detail;
    const TopKKernels& kk = *kt.topk;
    const index_t B = p.n_users;
    if (B == 0) return;
    for (index_t i = 0; i < B * p.k; ++i) {
        out.rows[i] = -1;
        out.logits[i] = -std::numeric_limits<float>::infinity();
        out.scores[i] = 0.0;
    }
    const Excludes ex(p);
    index_t n_threads = threads > 0 ? threads : static_cast<index_t>(std::max(1u, std::thread::hardware_concurrency()));
    // Plan the grid: user chunks first; row ranges only when there are fewer chunks than threads.
    const index_t chunk = std::min(B, topk_user_chunk);
    const index_t n_chunks = (B + chunk - 1) / chunk;
    const index_t max_ranges = std::max<index_t>(1, p.n_rows * p.dim / topk_min_range_floats);
    const index_t n_ranges = n_chunks >= n_threads ? 1 : std::min(max_ranges, (n_threads + n_chunks - 1) / n_chunks);
    const index_t rows_per_range = (p.n_rows + n_ranges - 1) / n_ranges;
    // Block: about 16 KiB of rows for a chunk of users (reused from L1), bigger for one user (a stream).
    const index_t row_bytes = p.dim * static_cast<index_t>(sizeof(float));
    const index_t block_rows =
        chunk == 1 ? 1024 : std::max<index_t>(16, std::min<index_t>(256, (16384 / row_bytes) & ~index_t(3)));
    std::vector<Partial> parts(static_cast<std::size_t>(B * n_ranges));
    for (Partial& part : parts) part.heap.reserve(static_cast<std::size_t>(std::min(p.k, p.n_rows)));
    const index_t n_cells = n_chunks * n_ranges;
    parallel_chunks<ScanScratch>(n_cells, 1, std::min(n_threads, n_cells), [&](index_t cell, ScanScratch& sc) {
        const index_t c = cell / n_ranges, r = cell % n_ranges;
        const index_t row_begin = r * rows_per_range, row_end = std::min(p.n_rows, row_begin + rows_per_range);
        if (row_begin < row_end)
            scan_cell(p, kk, kt.dequant[static_cast<int>(p.dtype)], ex, c * chunk, std::min(B, (c + 1) * chunk), row_begin, row_end, r, n_ranges, block_rows,
                      parts, sc);
    });
    std::vector<Entry<float>> all;
    for (index_t u = 0; u < B; ++u)
        if (!merge_user(p, u, n_ranges, parts, all, out)) user_in_double(p, ex, u, out);
}

}  // namespace rankcore
