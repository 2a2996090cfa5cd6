/**
 * @file types.h
 * @brief Index type, ISA-target macros and a prefetch helper shared by all rankcore kernels.
 *
 * Nothing here knows about Python. Every other header includes this one.
 *
 * - `rankcore::index_t`: signed 64-bit index used for sizes, row ids and offsets
 *   (matches NumPy's int64 so arrays can be passed through without conversion).
 * - `RANKCORE_X86_64`: defined on x86-64; only then are AVX2 kernels compiled.
 * - `RANKCORE_TARGET_AVX2`: function attribute enabling AVX2+FMA+F16C for one function
 *   (GCC/Clang `target` attribute; empty on MSVC, which accepts the intrinsics
 *   without `/arch`). The build itself needs no global `-m` flags.
 * - `RANKCORE_ALWAYS_INLINE`: force-inline a function (for the ISA-independent loop
 *   templates that each ISA's target-attributed function instantiates, see dot.h).
 * - `rankcore::huge_page_allocator<T>`: std::allocator replacement for large tables that
 *   are read at random (IdIndex slots): on Linux, blocks of 2 MiB or more are 2 MiB-aligned
 *   and advised MADV_HUGEPAGE, so random reads do not also miss the TLB on every access.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define RANKCORE_X86_64 1
#include <immintrin.h>
#endif

#if defined(RANKCORE_X86_64) && (defined(__GNUC__) || defined(__clang__))
#define RANKCORE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#elif defined(RANKCORE_X86_64)
#define RANKCORE_TARGET_AVX2
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RANKCORE_ALWAYS_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define RANKCORE_ALWAYS_INLINE __forceinline
#else
#define RANKCORE_ALWAYS_INLINE inline
#endif

namespace rankcore {

/// Signed 64-bit index: sizes, row ids, positions and offsets.
using index_t = std::int64_t;

/// Size of a cache line assumed by the prefetching code.
constexpr std::size_t cache_line_bytes = 64;

/// Prefetch localities (as in `__builtin_prefetch`): L1 and below, or L2 and below.
/// For streams of random rows prefer kL2: an L1 prefetch holds one of the core's few L1 fill
/// buffers until its line arrives, an L2 prefetch does not, so many more rows can be on their way.
constexpr int kL1 = 3, kL2 = 2;

/// Hint the CPU to fetch the cache line holding `p` (`prefetcht0` for kL1, `prefetcht1` for kL2).
template <int Locality = kL1>
inline void prefetch_read(const void* p) noexcept {
    static_assert(Locality == kL1 || Locality == kL2, "locality must be kL1 or kL2");
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, Locality);
#elif defined(RANKCORE_X86_64)
    _mm_prefetch(static_cast<const char*>(p), Locality == kL1 ? _MM_HINT_T0 : _MM_HINT_T1);
#else
    (void)p;
#endif
}

/// Prefetch every cache line overlapped by the byte range [p, p + bytes).
/// Only addresses are computed; no memory is read, so this is safe for any range.
template <int Locality = kL1>
inline void prefetch_range(const void* p, std::size_t bytes) noexcept {
    std::uintptr_t line = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t(cache_line_bytes - 1);
    const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(p) + bytes;
    for (; line < end; line += cache_line_bytes) prefetch_read<Locality>(reinterpret_cast<const void*>(line));
}

/**
 * @brief Allocator for large, randomly accessed tables.
 *
 * With transparent huge pages in "madvise" mode (a common default), a 64 MiB table of 4 KiB
 * pages needs 16384 TLB entries and every random read also pays a page walk; advised huge
 * pages need 32. Blocks under 2 MiB, and every block off Linux, come from operator new.
 */
template <class T>
struct huge_page_allocator {
    using value_type = T;
    static constexpr std::size_t huge_page_bytes = std::size_t(1) << 21;

    huge_page_allocator() noexcept = default;
    template <class U>
    huge_page_allocator(const huge_page_allocator<U>&) noexcept {}

    T* allocate(std::size_t n) {
        if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
        const std::size_t bytes = n * sizeof(T);
#if defined(__linux__)
        if (bytes >= huge_page_bytes) {
            const std::size_t rounded = (bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
            void* p = std::aligned_alloc(huge_page_bytes, rounded);
            if (!p) throw std::bad_alloc();
            (void)madvise(p, rounded, MADV_HUGEPAGE);  // only advice: failure is harmless
            return static_cast<T*>(p);
        }
#endif
        return static_cast<T*>(::operator new(bytes));
    }

    void deallocate(T* p, std::size_t n) noexcept {
#if defined(__linux__)
        if (n * sizeof(T) >= huge_page_bytes) {
            std::free(p);
            return;
        }
#endif
        (void)n;
        ::operator delete(p);
    }

    template <class U>
    bool operator==(const huge_page_allocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const huge_page_allocator<U>&) const noexcept { return false; }
};

}  // namespace rankcore
