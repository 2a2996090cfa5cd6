/**
 * @file dot.h
 * @brief Dot products and gathered dot products (candidate logits).
 *
 * Ops, dtypes and ISAs in this file:
 *
 * | op            | inputs        | accumulator | ISAs                          |
 * |---------------|---------------|-------------|-------------------------------|
 * | dot           | f32 x f32     | f32         | serial, avx2 (AVX2 + FMA)     |
 * | dot (double)  | f32 x f32     | f64         | serial only (fallback path)   |
 * | gather_dot    | f32 table rows| f32         | serial, avx2                  |
 *
 * Accumulators: the float32 kernels accumulate in float32, as the numerical policy
 * allows any summation order. The serial kernel uses four independent scalar
 * accumulators (instruction-level parallelism without relying on `-ffast-math`);
 * the AVX2 kernel uses four 8-lane FMA accumulators over blocks of 32 floats, then
 * one accumulator over blocks of 8, then a masked load for the final 1..7 floats
 * (`_mm256_maskload_ps` never touches the masked-off lanes, so rows need no padding).
 *
 * `gather_dot_*` computes `out[i] = dot(table[rows[i], :dim], user) + bias[rows[i]]`
 * and prefetches every cache line of upcoming rows into L2 (`prefetcht1`), about
 * `prefetch_lines` lines ahead: rows of a large table are random DRAM accesses, and
 * prefetches into L2 do not hold the few L1 fill buffers, so many rows are on their way at
 * once (L1 prefetches a dozen rows ahead left the loop waiting on memory; see
 * docs/performance.md for the measurements behind the default depth).
 *
 * The prefetching loop is written once (`detail::gather_rows`) and instantiated per ISA
 * with a per-row dot functor; see there for how the AVX2 instantiation keeps its target.
 * For dim <= 135 the AVX2 gather keeps the user vector in registers (one instantiation per
 * count of whole 8-float vectors).
 */
#pragma once

#include <cstddef>

#include "rankcore/types.h"

namespace rankcore {

/// Cache lines of upcoming rows that gather_dot keeps prefetched ahead of the row it scores.
#ifndef RANKCORE_PREFETCH_LINES
#define RANKCORE_PREFETCH_LINES 320
#endif
constexpr index_t prefetch_lines = RANKCORE_PREFETCH_LINES;

/// How many candidates ahead gather_dot prefetches rows of `row_bytes` bytes:
/// `prefetch_lines` cache lines' worth, at least 4 rows and at most 64.
constexpr index_t prefetch_distance(std::size_t row_bytes) noexcept {
    const index_t lines = static_cast<index_t>((row_bytes + cache_line_bytes - 1) / cache_line_bytes);
    const index_t rows = prefetch_lines / (lines > 0 ? lines : 1);
    return rows < 4 ? 4 : (rows > 64 ? 64 : rows);
}

/**
 * @brief Float32 dot product, scalar reference.
 * @param a  (n,) float32
 * @param b  (n,) float32
 * @param n  number of elements (may be 0)
 */
inline float dot_f32_serial(const float* a, const float* b, std::size_t n) noexcept {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/**
 * @brief Dot product of two float32 vectors with double products and a double sum.
 * Used when the float32 logits of a request overflow (see softmax.h).
 * @param a  (n,) float32
 * @param b  (n,) float32
 */
inline double dot_f32_f64_serial(const float* a, const float* b, std::size_t n) noexcept {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return s;
}

namespace detail {
/**
 * @brief The prefetching gather loop of every ISA: `out[i] = row_dot(table + rows[i] * ld) + bias[rows[i]]`,
 * with the rows `prefetch_distance` candidates ahead prefetched into L2.
 *
 * How each ISA keeps its target: this template has no target attribute and is always
 * inlined. Each ISA's gather function instantiates it inside its own body with a RowDot
 * whose operator() carries that same function's target attribute (none for serial,
 * RANKCORE_TARGET_AVX2 for avx2). Once the loop is inlined into an AVX2 function, the AVX2
 * dot is called from AVX2 code and is inlined too; GCC and Clang inline a callee only into
 * a caller whose target includes the callee's, so a shared loop compiled as a portable
 * function of its own would call the AVX2 dot out of line once per row.
 *
 * The same loop serves the compressed dtypes of quant.h: T is the stored element and
 * `row_scale` (int8 only, else nullptr) multiplies each row's dot before the bias is added; its
 * entry is prefetched with the row.
 *
 * @param table    (n_rows, ld) elements of T, row-major
 * @param ld       leading dimension of `table` in elements (ld >= dim)
 * @param dim      number of leading columns each row_dot reads (sets the prefetched bytes)
 * @param rows     (n,) row indices into `table`
 * @param bias     (n_rows,) float32 or nullptr
 * @param out      (n,) float32 output
 * @param row_dot  `float row_dot(const T* row)`: the dot of row[:dim] with the user vector
 * @param row_scale (n_rows,) float32 per-row scale, or nullptr
 */
template <class T, class RowDot>
RANKCORE_ALWAYS_INLINE void gather_rows(const T* table, index_t ld, index_t dim, const index_t* rows, index_t n,
                                        const float* bias, float* out, const RowDot& row_dot,
                                        const float* row_scale = nullptr) noexcept {
    const std::size_t row_bytes = static_cast<std::size_t>(dim) * sizeof(T);
    const index_t ahead = prefetch_distance(row_bytes);
    for (index_t i = 0; i < n && i < ahead; ++i) {
        prefetch_range<kL2>(table + rows[i] * ld, row_bytes);
        // prefetch_range, not prefetch_read: with prefetch_read here GCC 12 -O3 emitted none of
        // this loop's prefetches (checked in the disassembly)
        if (row_scale) prefetch_range<kL2>(row_scale + rows[i], sizeof(float));
    }
    for (index_t i = 0; i < n; ++i) {
        if (i + ahead < n) {
            prefetch_range<kL2>(table + rows[i + ahead] * ld, row_bytes);
            if (row_scale) prefetch_range<kL2>(row_scale + rows[i + ahead], sizeof(float));
        }
        const index_t r = rows[i];
        float l = row_dot(table + r * ld);
        if (row_scale) l *= row_scale[r];
        if (bias) l += bias[r];
        out[i] = l;
    }
}

/// Per-row dot of the serial kernel.
struct SerialRowDot {
    const float* user;
    std::size_t dim;
    float operator()(const float* row) const noexcept { return dot_f32_serial(row, user, dim); }
};
}  // namespace detail

/**
 * @brief Logits of gathered table rows, scalar reference.
 * @param table  (n_rows, ld) float32, row-major
 * @param ld     leading dimension of `table` in floats (ld >= dim)
 * @param dim    number of leading columns used in the dot product
 * @param user   (dim,) float32
 * @param rows   (n,) row indices into `table`, each in [0, n_rows)
 * @param n      number of rows to score
 * @param bias   (n_rows,) float32 or nullptr
 * @param out    (n,) float32 output: `dot(table[rows[i], :dim], user) + bias[rows[i]]`
 */
inline void gather_dot_f32_serial(const float* table, index_t ld, index_t dim, const float* user,
                                  const index_t* rows, index_t n, const float* bias, float* out) noexcept {
    detail::gather_rows(table, ld, dim, rows, n, bias, out, detail::SerialRowDot{user, static_cast<std::size_t>(dim)});
}

#if defined(RANKCORE_X86_64)

namespace detail {
/// Lanes [8 - k, 16 - k) of this table form a mask whose first k lanes are set.
alignas(64) inline const std::int32_t avx2_tail_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                                  0,  0,  0,  0,  0,  0,  0,  0};

RANKCORE_TARGET_AVX2 inline __m256i avx2_tail_mask(std::size_t k) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(avx2_tail_mask_table + 8 - k));
}

RANKCORE_TARGET_AVX2 inline float avx2_hsum(__m256 v) noexcept {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}
}  // namespace detail

/**
 * @brief Float32 dot product, AVX2 + FMA. Unaligned loads; no padding required.
 * @param a  (n,) float32
 * @param b  (n,) float32
 */
RANKCORE_TARGET_AVX2 inline float dot_f32_avx2(const float* a, const float* b, std::size_t n) noexcept {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    if (i < n) {
        const __m256i mask = detail::avx2_tail_mask(n - i);
        acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask), acc1);
    }
    return detail::avx2_hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

namespace detail {
/// Per-row dot of the AVX2 kernel for any dim: dot_f32_avx2.
struct Avx2RowDot {
    const float* user;
    std::size_t dim;
    RANKCORE_TARGET_AVX2 float operator()(const float* row) const noexcept { return dot_f32_avx2(row, user, dim); }
};

/**
 * @brief Per-row dot of the AVX2 kernel for dim = 8 * NV + tail (0 <= tail < 8), the user
 * vector held in registers. Two accumulators: even vectors (and none else) into `a`, odd
 * vectors and the tail into `b`.
 */
template <int NV>
struct Avx2RegisterRowDot {
    __m256 u[NV > 0 ? NV : 1];
    __m256i mask;
    __m256 u_tail;
    bool tail;

    RANKCORE_TARGET_AVX2 Avx2RegisterRowDot(const float* user, std::size_t tail_floats) noexcept
        : mask(avx2_tail_mask(tail_floats)),  // tail == 0: no lane set, nothing is read
          u_tail(_mm256_maskload_ps(user + 8 * NV, mask)),
          tail(tail_floats != 0) {
        u[0] = _mm256_setzero_ps();
        for (int v = 0; v < NV; ++v) u[v] = _mm256_loadu_ps(user + 8 * v);
    }

    RANKCORE_TARGET_AVX2 float operator()(const float* row) const noexcept {
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        for (int v = 0; v + 1 < NV; v += 2) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(row + 8 * v), u[v], a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(row + 8 * v + 8), u[v + 1], b);
        }
        if (NV % 2) a = _mm256_fmadd_ps(_mm256_loadu_ps(row + 8 * (NV - 1)), u[NV > 0 ? NV - 1 : 0], a);
        if (tail) b = _mm256_fmadd_ps(_mm256_maskload_ps(row + 8 * NV, mask), u_tail, b);
        return avx2_hsum(_mm256_add_ps(a, b));
    }
};

/// gather_dot for dim = 8 * NV + tail: the shared loop instantiated in AVX2 code (see gather_rows).
template <int NV>
RANKCORE_TARGET_AVX2 void gather_dot_avx2_fixed(const float* table, index_t ld, index_t dim, const float* user,
                                                const index_t* rows, index_t n, const float* bias,
                                                float* out) noexcept {
    const Avx2RegisterRowDot<NV> row_dot(user, static_cast<std::size_t>(dim % 8));
    gather_rows(table, ld, dim, rows, n, bias, out, row_dot);
}

/// gather_dot for any dim: one dot_f32_avx2 per row, the shared loop instantiated in AVX2 code.
RANKCORE_TARGET_AVX2 inline void gather_dot_avx2_any(const float* table, index_t ld, index_t dim, const float* user,
                                                     const index_t* rows, index_t n, const float* bias,
                                                     float* out) noexcept {
    gather_rows(table, ld, dim, rows, n, bias, out, Avx2RowDot{user, static_cast<std::size_t>(dim)});
}
}  // namespace detail

/**
 * @brief Logits of gathered table rows, AVX2 + FMA. Same contract as gather_dot_f32_serial.
 */
RANKCORE_TARGET_AVX2 inline void gather_dot_f32_avx2(const float* table, index_t ld, index_t dim, const float* user,
                                                     const index_t* rows, index_t n, const float* bias,
                                                     float* out) noexcept {
    switch (dim / 8) {
#define RANKCORE_GATHER_CASE(NV) \
    case NV:                     \
        return detail::gather_dot_avx2_fixed<NV>(table, ld, dim, user, rows, n, bias, out);
        RANKCORE_GATHER_CASE(0)
        RANKCORE_GATHER_CASE(1)
        RANKCORE_GATHER_CASE(2)
        RANKCORE_GATHER_CASE(3)
        RANKCORE_GATHER_CASE(4)
        RANKCORE_GATHER_CASE(5)
        RANKCORE_GATHER_CASE(6)
        RANKCORE_GATHER_CASE(7)
        RANKCORE_GATHER_CASE(8)
        RANKCORE_GATHER_CASE(9)
        RANKCORE_GATHER_CASE(10)
        RANKCORE_GATHER_CASE(11)
        RANKCORE_GATHER_CASE(12)
        RANKCORE_GATHER_CASE(13)
        RANKCORE_GATHER_CASE(14)
        RANKCORE_GATHER_CASE(15)
        RANKCORE_GATHER_CASE(16)
#undef RANKCORE_GATHER_CASE
        default:
            return detail::gather_dot_avx2_any(table, ld, dim, user, rows, n, bias, out);
    }
}

#endif  // RANKCORE_X86_64

}  // namespace rankcore
