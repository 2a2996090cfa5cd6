/**
 * @file quant.h
 * @brief Compressed item tables: float16, bfloat16 and int8 rows, their gathers and dequantisation.
 *
 * Storage dtypes (TableDtype) and what one stored element means as a float32:
 *
 * | dtype | element     | value                                                    |
 * |-------|-------------|----------------------------------------------------------|
 * | f32   | float       | itself                                                   |
 * | f16   | uint16 bits | IEEE binary16 widened exactly to float32                 |
 * | bf16  | uint16 bits | the upper 16 bits of a float32 (lower 16 bits zero)      |
 * | i8    | int8        | q * row_scale[row] (symmetric, one float32 scale per row) |
 *
 * Every widening is exact, so the only rounding is the quantisation itself (done once, in
 * Python, see rankcore.core.quantize). The user vector and every accumulator stay float32:
 * `logit = dot(widen(row[:dim]), user)` (times row_scale[row] for int8, one multiply per row)
 * `+ bias[row]`. The int8 scale multiply comes after the float32 dot, so an int8 row's logit is
 * not bit-equal to the logit of its dequantised float32 row (it is within float32 rounding).
 *
 * Ops and ISAs: gather_dot_<dtype>_<isa> (the prefetching gather of dot.h, instantiated with a
 * per-dtype row dot) and dequant_rows_<dtype>_<isa> (consecutive rows to float32, used by the
 * catalog top-K scan, which then runs its float32 block kernel), serial and AVX2 (+FMA, +F16C).
 * Rows need no padding: the AVX2 tails copy the last dim % 8 elements into a zeroed buffer.
 */
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "rankcore/dot.h"
#include "rankcore/types.h"

namespace rankcore {

/// Storage dtype of an item table (see the table above). The values index KernelTable::gather.
enum class TableDtype : int { f32 = 0, f16 = 1, bf16 = 2, i8 = 3 };
constexpr int n_table_dtypes = 4;

/// Bytes of one stored element.
constexpr std::size_t dtype_bytes(TableDtype d) noexcept {
    return d == TableDtype::f32 ? 4 : (d == TableDtype::i8 ? 1 : 2);
}

/// Name of a dtype as Python spells it.
inline const char* dtype_name(TableDtype d) noexcept {
    switch (d) {
        case TableDtype::f16: return "float16";
        case TableDtype::bf16: return "bfloat16";
        case TableDtype::i8: return "int8";
        default: return "float32";
    }
}

/// An item table of any dtype: `n_rows` rows of `ld` elements; `row_scale` only for i8.
struct TableRef {
    const void* data = nullptr;
    TableDtype dtype = TableDtype::f32;
    index_t ld = 0;                    ///< elements per row (>= dim)
    const float* row_scale = nullptr;  ///< (n_rows,) float32 for i8, else nullptr

    const char* row(index_t r) const noexcept {
        return static_cast<const char*>(data) + static_cast<std::size_t>(r) * static_cast<std::size_t>(ld) *
                                                      dtype_bytes(dtype);
    }
};

/// IEEE binary16 bits to float32 (exact; subnormals, inf and NaN kept).
inline float half_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0) {
        const float f = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// bfloat16 bits to float32 (exact).
inline float bf16_to_float(std::uint16_t b) noexcept {
    const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

namespace detail {
struct WidenF16 {
    using T = std::uint16_t;
    static float scalar(T x) noexcept { return half_to_float(x); }
};
struct WidenBF16 {
    using T = std::uint16_t;
    static float scalar(T x) noexcept { return bf16_to_float(x); }
};
struct WidenI8 {
    using T = std::int8_t;
    static float scalar(T x) noexcept { return static_cast<float>(x); }
};

/// Serial dot of a stored row with a float32 user vector, four float32 accumulators.
template <class W>
inline float dot_q_serial(const typename W::T* a, const float* b, std::size_t n) noexcept {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += W::scalar(a[i]) * b[i];
        s1 += W::scalar(a[i + 1]) * b[i + 1];
        s2 += W::scalar(a[i + 2]) * b[i + 2];
        s3 += W::scalar(a[i + 3]) * b[i + 3];
    }
    for (; i < n; ++i) s0 += W::scalar(a[i]) * b[i];
    return (s0 + s1) + (s2 + s3);
}

template <class W>
struct SerialQRowDot {
    const float* user;
    std::size_t dim;
    float operator()(const typename W::T* row) const noexcept { return dot_q_serial<W>(row, user, dim); }
};

template <class W>
inline void gather_q_serial(const void* table, index_t ld, index_t dim, const float* user, const index_t* rows,
                            index_t n, const float* bias, const float* row_scale, float* out) noexcept {
    gather_rows(static_cast<const typename W::T*>(table), ld, dim, rows, n, bias, out,
                SerialQRowDot<W>{user, static_cast<std::size_t>(dim)}, row_scale);
}

template <class W>
inline void dequant_q_serial(const void* table, index_t ld, index_t dim, index_t n, const float* row_scale,
                             float* out, index_t ldo) noexcept {
    const auto* t = static_cast<const typename W::T*>(table);
    for (index_t r = 0; r < n; ++r) {
        const float s = row_scale ? row_scale[r] : 1.0f;
        for (index_t j = 0; j < dim; ++j) out[r * ldo + j] = W::scalar(t[r * ld + j]) * s;
    }
}
}  // namespace detail

/// Logit of one row in double (the overflow fallback): double products of the widened values.
inline double row_dot_f64(const TableRef& t, index_t r, const float* user, index_t dim) noexcept {
    const char* row = t.row(r);
    double s = 0.0;
    switch (t.dtype) {
        case TableDtype::f32:
            return dot_f32_f64_serial(reinterpret_cast<const float*>(row), user, static_cast<std::size_t>(dim));
        case TableDtype::f16:
            for (index_t j = 0; j < dim; ++j)
                s += static_cast<double>(half_to_float(reinterpret_cast<const std::uint16_t*>(row)[j])) * user[j];
            return s;
        case TableDtype::bf16:
            for (index_t j = 0; j < dim; ++j)
                s += static_cast<double>(bf16_to_float(reinterpret_cast<const std::uint16_t*>(row)[j])) * user[j];
            return s;
        case TableDtype::i8:
            for (index_t j = 0; j < dim; ++j)
                s += static_cast<double>(reinterpret_cast<const std::int8_t*>(row)[j]) * user[j];
            return s * static_cast<double>(t.row_scale[r]);
    }
    return s;
}

/// Compressed gathers: `out[i] = dot(widen(table[rows[i], :dim]), user) (* row_scale[rows[i]]) + bias[rows[i]]`.
using GatherQFn = void (*)(const void* table, index_t ld, index_t dim, const float* user, const index_t* rows,
                           index_t n, const float* bias, const float* row_scale, float* out);
/// Dequantise `n` consecutive rows (ld elements apart) into out[r * ldo + j], j < dim.
using DequantFn = void (*)(const void* table, index_t ld, index_t dim, index_t n, const float* row_scale, float* out,
                           index_t ldo);

inline void gather_f16_serial(const void* t, index_t ld, index_t dim, const float* u, const index_t* rows, index_t n,
                              const float* bias, const float* scale, float* out) noexcept {
    detail::gather_q_serial<detail::WidenF16>(t, ld, dim, u, rows, n, bias, scale, out);
}
inline void gather_bf16_serial(const void* t, index_t ld, index_t dim, const float* u, const index_t* rows, index_t n,
                               const float* bias, const float* scale, float* out) noexcept {
    detail::gather_q_serial<detail::WidenBF16>(t, ld, dim, u, rows, n, bias, scale, out);
}
inline void gather_i8_serial(const void* t, index_t ld, index_t dim, const float* u, const index_t* rows, index_t n,
                             const float* bias, const float* scale, float* out) noexcept {
    detail::gather_q_serial<detail::WidenI8>(t, ld, dim, u, rows, n, bias, scale, out);
}
inline void dequant_f16_serial(const void* t, index_t ld, index_t dim, index_t n, const float* s, float* out,
                               index_t ldo) noexcept {
    detail::dequant_q_serial<detail::WidenF16>(t, ld, dim, n, s, out, ldo);
}
inline void dequant_bf16_serial(const void* t, index_t ld, index_t dim, index_t n, const float* s, float* out,
                                index_t ldo) noexcept {
    detail::dequant_q_serial<detail::WidenBF16>(t, ld, dim, n, s, out, ldo);
}
inline void dequant_i8_serial(const void* t, index_t ld, index_t dim, index_t n, const float* s, float* out,
                              index_t ldo) noexcept {
    detail::dequant_q_serial<detail::WidenI8>(t, ld, dim, n, s, out, ldo);
}

#if defined(RANKCORE_X86_64)

namespace detail {
/// Eight stored elements widened to float32 (AVX2 + F16C).
struct Avx2WidenF16 {
    using T = std::uint16_t;
    RANKCORE_TARGET_AVX2 static __m256 load8(const T* p) noexcept {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
};
struct Avx2WidenBF16 {
    using T = std::uint16_t;
    RANKCORE_TARGET_AVX2 static __m256 load8(const T* p) noexcept {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
};
struct Avx2WidenI8 {
    using T = std::int8_t;
    RANKCORE_TARGET_AVX2 static __m256 load8(const T* p) noexcept {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    }
};

/// The last `k` (1..7) elements widened, the other lanes 0; reads only those k elements.
template <class W>
RANKCORE_TARGET_AVX2 inline __m256 avx2_load_tail(const typename W::T* p, std::size_t k) noexcept {
    alignas(16) typename W::T tmp[16] = {};
    std::memcpy(tmp, p, k * sizeof(typename W::T));
    return W::load8(tmp);
}

/// Dot of a stored row with a float32 user vector: 4 eight-lane FMA accumulators over 32 elements.
template <class W>
RANKCORE_TARGET_AVX2 inline float dot_q_avx2(const typename W::T* a, const float* b, std::size_t n) noexcept {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(W::load8(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(W::load8(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(W::load8(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(W::load8(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(W::load8(a + i), _mm256_loadu_ps(b + i), acc0);
    if (i < n) {
        const __m256i mask = avx2_tail_mask(n - i);
        acc1 = _mm256_fmadd_ps(avx2_load_tail<W>(a + i, n - i), _mm256_maskload_ps(b + i, mask), acc1);
    }
    return avx2_hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

template <class W>
struct Avx2QRowDot {
    const float* user;
    std::size_t dim;
    RANKCORE_TARGET_AVX2 float operator()(const typename W::T* row) const noexcept {
        return dot_q_avx2<W>(row, user, dim);
    }
};

/**
 * dot_q_avx2 for dim = 8 * NV + tail with the user vector held in registers (loaded once per
 * gather, not once per row). The same accumulators in the same order as dot_q_avx2: vector v of
 * the 32-element body goes to acc[v % 4], the 8-element rest to acc0, the tail to acc1, and the
 * sum is (acc0 + acc1) + (acc2 + acc3); so a row's logit is bitwise the one dot_q_avx2 gives.
 */
template <class W, int NV>
struct Avx2RegisterQRowDot {
    __m256 u[NV > 0 ? NV : 1];
    __m256i mask;
    __m256 u_tail;
    std::size_t tail;

    RANKCORE_TARGET_AVX2 Avx2RegisterQRowDot(const float* user, std::size_t tail_elems) noexcept
        : mask(avx2_tail_mask(tail_elems)),  // tail == 0: no lane set, nothing is read
          u_tail(_mm256_maskload_ps(user + 8 * NV, mask)),
          tail(tail_elems) {
        u[0] = _mm256_setzero_ps();
        for (int v = 0; v < NV; ++v) u[v] = _mm256_loadu_ps(user + 8 * v);
    }

    RANKCORE_TARGET_AVX2 float operator()(const typename W::T* row) const noexcept {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        constexpr int body = NV & ~3;
        for (int v = 0; v < body; ++v) acc[v % 4] = _mm256_fmadd_ps(W::load8(row + 8 * v), u[v], acc[v % 4]);
        for (int v = body; v < NV; ++v) acc[0] = _mm256_fmadd_ps(W::load8(row + 8 * v), u[v], acc[0]);
        if (tail) acc[1] = _mm256_fmadd_ps(avx2_load_tail<W>(row + 8 * NV, tail), u_tail, acc[1]);
        return avx2_hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    }
};

template <class W>
RANKCORE_TARGET_AVX2 inline void gather_q_avx2(const void* table, index_t ld, index_t dim, const float* user,
                                               const index_t* rows, index_t n, const float* bias,
                                               const float* row_scale, float* out) noexcept {
    const auto* t = static_cast<const typename W::T*>(table);
    const std::size_t tail = static_cast<std::size_t>(dim % 8);
    switch (dim / 8) {
#define RANKCORE_GATHER_Q_CASE(NV) \
    case NV:                       \
        return gather_rows(t, ld, dim, rows, n, bias, out, Avx2RegisterQRowDot<W, NV>(user, tail), row_scale);
        RANKCORE_GATHER_Q_CASE(0)
        RANKCORE_GATHER_Q_CASE(1)
        RANKCORE_GATHER_Q_CASE(2)
        RANKCORE_GATHER_Q_CASE(3)
        RANKCORE_GATHER_Q_CASE(4)
        RANKCORE_GATHER_Q_CASE(5)
        RANKCORE_GATHER_Q_CASE(6)
        RANKCORE_GATHER_Q_CASE(7)
        RANKCORE_GATHER_Q_CASE(8)
        RANKCORE_GATHER_Q_CASE(9)
        RANKCORE_GATHER_Q_CASE(10)
        RANKCORE_GATHER_Q_CASE(11)
        RANKCORE_GATHER_Q_CASE(12)
        RANKCORE_GATHER_Q_CASE(13)
        RANKCORE_GATHER_Q_CASE(14)
        RANKCORE_GATHER_Q_CASE(15)
        RANKCORE_GATHER_Q_CASE(16)
#undef RANKCORE_GATHER_Q_CASE
        default:
            return gather_rows(t, ld, dim, rows, n, bias, out, Avx2QRowDot<W>{user, static_cast<std::size_t>(dim)},
                               row_scale);
    }
}

template <class W>
RANKCORE_TARGET_AVX2 inline void dequant_q_avx2(const void* table, index_t ld, index_t dim, index_t n,
                                                const float* row_scale, float* out, index_t ldo) noexcept {
    const auto* t = static_cast<const typename W::T*>(table);
    const std::size_t d = static_cast<std::size_t>(dim);
    for (index_t r = 0; r < n; ++r) {
        const __m256 s = _mm256_set1_ps(row_scale ? row_scale[r] : 1.0f);
        const typename W::T* src = t + r * ld;
        float* dst = out + r * ldo;
        std::size_t j = 0;
        for (; j + 8 <= d; j += 8) _mm256_storeu_ps(dst + j, _mm256_mul_ps(W::load8(src + j), s));
        if (j < d)
            _mm256_maskstore_ps(dst + j, avx2_tail_mask(d - j), _mm256_mul_ps(avx2_load_tail<W>(src + j, d - j), s));
    }
}
}  // namespace detail

RANKCORE_TARGET_AVX2 inline void gather_f16_avx2(const void* t, index_t ld, index_t dim, const float* u,
                                                 const index_t* rows, index_t n, const float* bias,
                                                 const float* scale, float* out) noexcept {
    detail::gather_q_avx2<detail::Avx2WidenF16>(t, ld, dim, u, rows, n, bias, scale, out);
}
RANKCORE_TARGET_AVX2 inline void gather_bf16_avx2(const void* t, index_t ld, index_t dim, const float* u,
                                                  const index_t* rows, index_t n, const float* bias,
                                                  const float* scale, float* out) noexcept {
    detail::gather_q_avx2<detail::Avx2WidenBF16>(t, ld, dim, u, rows, n, bias, scale, out);
}
RANKCORE_TARGET_AVX2 inline void gather_i8_avx2(const void* t, index_t ld, index_t dim, const float* u,
                                                const index_t* rows, index_t n, const float* bias, const float* scale,
                                                float* out) noexcept {
    detail::gather_q_avx2<detail::Avx2WidenI8>(t, ld, dim, u, rows, n, bias, scale, out);
}
RANKCORE_TARGET_AVX2 inline void dequant_f16_avx2(const void* t, index_t ld, index_t dim, index_t n, const float* s,
                                                  float* out, index_t ldo) noexcept {
    detail::dequant_q_avx2<detail::Avx2WidenF16>(t, ld, dim, n, s, out, ldo);
}
RANKCORE_TARGET_AVX2 inline void dequant_bf16_avx2(const void* t, index_t ld, index_t dim, index_t n, const float* s,
                                                   float* out, index_t ldo) noexcept {
    detail::dequant_q_avx2<detail::Avx2WidenBF16>(t, ld, dim, n, s, out, ldo);
}
RANKCORE_TARGET_AVX2 inline void dequant_i8_avx2(const void* t, index_t ld, index_t dim, index_t n, const float* s,
                                                 float* out, index_t ldo) noexcept {
    detail::dequant_q_avx2<detail::Avx2WidenI8>(t, ld, dim, n, s, out, ldo);
}

#endif  // RANKCORE_X86_64

}  // namespace rankcore
