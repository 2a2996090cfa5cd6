/**
 * @file rowset.h
 * @brief Set operations on int64 row ids (as returned by IdIndex lookups).
 *
 * Ops: `all_known_distinct` (every row >= 0 and none repeated: a ranking request that then
 * needs no de-duplication) and `rows_in` (membership of each row in a set of values, for
 * filters). Both build one small open-addressing set (linear probing, multiplicative hash)
 * in caller-provided scratch storage, so repeated calls allocate nothing. Portable C++ only;
 * nothing here knows about Python.
 */
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "rankcore/types.h"

namespace rankcore {

/**
 * @brief Whether every row is known (>= 0) and none repeats: the common case of a ranking
 * request, which then needs no de-duplication. One pass with a small open-addressing set of
 * rows (load factor <= 1/2).
 * @param rows     (n,) row ids as returned by IdIndex::find_batch (-1 = unknown)
 * @param scratch  reused set storage
 */
inline bool all_known_distinct(const index_t* rows, index_t n, std::vector<index_t>& scratch) {
    if (n <= 0) return true;
    std::size_t size = 16;
    while (size < 2 * static_cast<std::size_t>(n)) size *= 2;
    scratch.assign(size, -1);
    const std::size_t mask = size - 1;
    for (index_t i = 0; i < n; ++i) {
        const index_t r = rows[i];
        if (r < 0) return false;
        std::size_t h = static_cast<std::size_t>((static_cast<std::uint64_t>(r) * 0x9E3779B97F4A7C15ull) >> 32) & mask;
        while (scratch[h] != -1) {
            if (scratch[h] == r) return false;
            h = (h + 1) & mask;
        }
        scratch[h] = r;
    }
    return true;
}

/**
 * @brief out[i] = whether rows[i] is one of `values` (m values, any order, repeats allowed).
 * One small open-addressing set of the values, then one probe a row, with none of the
 * mispredicted branches of a binary search.
 * @param scratch  reused set storage
 */
inline void rows_in(const index_t* values, index_t m, const index_t* rows, index_t n, bool* out,
                    std::vector<index_t>& scratch) {
    constexpr index_t empty = std::numeric_limits<index_t>::min();
    // Sparse (load <= 1/8, up to 64K slots): a probe for a row that is not there, the common
    // case, then nearly always hits an empty slot at once, so the probe loop's branch predicts.
    const std::size_t um = static_cast<std::size_t>(m);
    std::size_t size = 16;
    while (size < (um <= 8192 ? 8 * um : 2 * um)) size *= 2;
    scratch.assign(size, empty);
    const std::size_t mask = size - 1;
    auto slot = [mask](index_t v) {
        return static_cast<std::size_t>((static_cast<std::uint64_t>(v) * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    };
    bool has_empty = false;  // whether `values` holds the sentinel itself
    for (index_t j = 0; j < m; ++j) {
        const index_t v = values[j];
        if (v == empty) {
            has_empty = true;
            continue;
        }
        std::size_t h = slot(v);
        while (scratch[h] != empty && scratch[h] != v) h = (h + 1) & mask;
        scratch[h] = v;
    }
    for (index_t i = 0; i < n; ++i) {
        const index_t r = rows[i];
        if (r == empty) {
            out[i] = has_empty;
            continue;
        }
        std::size_t h = slot(r);
        while (scratch[h] != empty && scratch[h] != r) h = (h + 1) & mask;
        out[i] = scratch[h] == r;
    }
}

}  // namespace rankcore
