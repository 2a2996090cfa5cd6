/**
 * @file types.h
 * @brief Index type, ISA-target macros and a prefetch helper shared by all rankcore kernels.
 *
 * Nothing here knows about Python. Every other header includes this one.
 *
 * - `rankcore::index_t`: signed 64-bit index used for sizes, row ids and offsets
 *   (matches NumPy's int64 so arrays can be passed through without conversion).
 * - `RANKCORE_X86_64`: defined on x86-64; only then are AVX2 kernels compiled.
 * - `RANKCORE_TARGET_AVX2`: function attribute enabling AVX2+FMA for one function
 *   (GCC/Clang `target` attribute; empty on MSVC, which accepts the intrinsics
 *   without `/arch`). The build itself needs no global `-m` flags.
 */
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#define RANKCORE_X86_64 1
#include <immintrin.h>
#endif

#if defined(RANKCORE_X86_64) && (defined(__GNUC__) || defined(__clang__))
#define RANKCORE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#elif defined(RANKCORE_X86_64)
#define RANKCORE_TARGET_AVX2
#endif

namespace rankcore {

/// Signed 64-bit index: sizes, row ids, positions and offsets.
using index_t = std::int64_t;

/// Size of a cache line assumed by the prefetching code.
constexpr std::size_t cache_line_bytes = 64;

/// Hint the CPU to fetch the cache line holding `p` into all cache levels.
inline void prefetch_read(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#elif defined(RANKCORE_X86_64)
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
    (void)p;
#endif
}

/// Prefetch every cache line overlapped by the byte range [p, p + bytes).
/// Only addresses are computed; no memory is read, so this is safe for any range.
inline void prefetch_range(const void* p, std::size_t bytes) noexcept {
    std::uintptr_t line = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t(cache_line_bytes - 1);
    const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(p) + bytes;
    for (; line < end; line += cache_line_bytes) prefetch_read(reinterpret_cast<const void*>(line));
}

}  // namespace rankcore
