/**
 * @file softmax.h
 * @brief Max-subtracted softmax over one request's logits, plus the float64 fallback.
 *
 * Ops, dtypes and ISAs in this file:
 *
 * | op                 | dtype                  | ISAs                 |
 * |--------------------|------------------------|----------------------|
 * | exp                | f32                    | serial (std::exp), avx2 (polynomial) |
 * | softmax            | f32 in, f64 sum, f32 out | serial, avx2       |
 * | softmax (fallback) | f64                    | serial               |
 *
 * Numerical policy (shared with the numba and NumPy backends):
 * - If every logit is finite: `m = max(l)`, `e_i = exp(l_i - m)` in float32,
 *   `s = sum(e_i)` accumulated in double, `score_i = float(e_i / s)` (division in double).
 * - Otherwise the float32 kernels return `false` and the caller recomputes the request's
 *   logits in double (see score.h) and calls softmax_f64_serial.
 * Scores are never NaN. No `-ffast-math`: infinities and NaNs must behave per IEEE.
 *
 * AVX2 exp: Cody-Waite range reduction `x = n ln2 + r`, |r| <= ln2/2, a degree-6
 * polynomial for e^r (Cephes expf coefficients, ~1 ulp), and the scale 2^n applied as
 * two factors 2^(n/2) 2^(n - n/2) so results down to the subnormal range stay right.
 * Inputs below -104 give exactly 0 (e^-104 is below half the smallest subnormal).
 * Tails of 1..7 logits use masked loads/stores; no padding is needed.
 */
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "rankcore/dot.h"
#include "rankcore/types.h"

namespace rankcore {

/**
 * @brief Float32 softmax with double accumulation, scalar reference.
 * @param logits  (n,) float32
 * @param n       number of logits (0 is allowed and does nothing)
 * @param scores  (n,) float32 output; may alias nothing in `logits`
 * @return false if any logit is NaN or +-inf (scores then unspecified), true otherwise
 */
inline bool softmax_f32_serial(const float* logits, index_t n, float* scores) noexcept {
    if (n <= 0) return true;
    float m = -std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < n; ++i) {
        if (!std::isfinite(logits[i])) return false;
        m = logits[i] > m ? logits[i] : m;
    }
    double s = 0.0;
    for (index_t i = 0; i < n; ++i) {
        const float e = std::exp(logits[i] - m);
        scores[i] = e;
        s += static_cast<double>(e);
    }
    for (index_t i = 0; i < n; ++i) scores[i] = static_cast<float>(static_cast<double>(scores[i]) / s);
    return true;
}

/**
 * @brief Double-precision softmax used when float32 logits overflow.
 * @param logits  (n,) float64, all finite (the caller checks)
 * @param n       number of logits
 * @param scores  (n,) float32 output, `float(exp(l_i - m) / sum)` computed in double
 */
inline void softmax_f64_serial(const double* logits, index_t n, float* scores) noexcept {
    if (n <= 0) return;
    double m = logits[0];
    for (index_t i = 1; i < n; ++i) m = logits[i] > m ? logits[i] : m;
    double s = 0.0;
    for (index_t i = 0; i < n; ++i) s += std::exp(logits[i] - m);
    for (index_t i = 0; i < n; ++i) scores[i] = static_cast<float>(std::exp(logits[i] - m) / s);
}

#if defined(RANKCORE_X86_64)

/**
 * @brief Vectorised e^x for 8 floats, AVX2 + FMA, accurate to about 1 ulp for x in [-87, 88];
 * gradual underflow down to x = -104, 0 below. NaN inputs are out of scope (softmax rejects them first).
 */
RANKCORE_TARGET_AVX2 inline __m256 exp_f32_avx2(__m256 x) noexcept {
    const __m256 lo = _mm256_set1_ps(-104.0f);
    const __m256 hi = _mm256_set1_ps(88.3762626647949f);
    const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    // n = round(x / ln2); r = x - n ln2 in two parts (Cody-Waite).
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n = 2^n1 * 2^n2 with n1 = n >> 1, both factors normal for n in [-150, 128].
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(underflow, y);
}

/**
 * @brief Float32 softmax with double accumulation, AVX2 + FMA. Same contract as softmax_f32_serial.
 */
RANKCORE_TARGET_AVX2 inline bool softmax_f32_avx2(const float* logits, index_t n, float* scores) noexcept {
    if (n <= 0) return true;
    const std::size_t un = static_cast<std::size_t>(n);
    const std::size_t body = un & ~std::size_t(7);
    const std::size_t tail = un - body;
    const __m256i tail_mask = detail::avx2_tail_mask(tail);
    const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());

    // Pass 1: max, and x * 0 summed (0 when every x is finite, NaN otherwise).
    __m256 vmax = neg_inf, vbad = _mm256_setzero_ps();
    const __m256 zero = _mm256_setzero_ps();
    for (std::size_t i = 0; i < body; i += 8) {
        const __m256 x = _mm256_loadu_ps(logits + i);
        vmax = _mm256_max_ps(vmax, x);
        vbad = _mm256_add_ps(vbad, _mm256_mul_ps(x, zero));
    }
    if (tail) {
        const __m256 x = _mm256_maskload_ps(logits + body, tail_mask);  // masked lanes read as 0
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, x, _mm256_castsi256_ps(tail_mask)));
        vbad = _mm256_add_ps(vbad, _mm256_mul_ps(x, zero));
    }
    if (detail::avx2_hsum(vbad) != 0.0f) return false;  // NaN != 0
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 vm = _mm256_set1_ps(_mm_cvtss_f32(m4));

    // Pass 2: e_i = exp(l_i - m) in float32, summed in double.
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (std::size_t i = 0; i < body; i += 8) {
        const __m256 e = exp_f32_avx2(_mm256_sub_ps(_mm256_loadu_ps(logits + i), vm));
        _mm256_storeu_ps(scores + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (tail) {
        __m256 e = exp_f32_avx2(_mm256_sub_ps(_mm256_maskload_ps(logits + body, tail_mask), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(tail_mask));
        _mm256_maskstore_ps(scores + body, tail_mask, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    const __m256d sv = _mm256_add_pd(s0, s1);
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(sv), _mm256_extractf128_pd(sv, 1));
    s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
    const __m256d vs = _mm256_set1_pd(_mm_cvtsd_f64(s2));

    // Pass 3: score_i = float(e_i / s), the division in double.
    for (std::size_t i = 0; i < body; i += 8) {
        const __m256 e = _mm256_loadu_ps(scores + i);
        const __m128 a = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), vs));
        const __m128 b = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), vs));
        _mm256_storeu_ps(scores + i, _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1));
    }
    if (tail) {
        const __m256 e = _mm256_maskload_ps(scores + body, tail_mask);
        const __m128 a = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), vs));
        const __m128 b = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), vs));
        _mm256_maskstore_ps(scores + body, tail_mask, _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1));
    }
    return true;
}

#endif  // RANKCORE_X86_64

}  // namespace rankcore
