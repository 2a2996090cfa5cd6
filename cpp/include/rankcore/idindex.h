/**
 * @file idindex.h
 * @brief Hash index from string ids (UTF-8 bytes) to row numbers.
 *
 * The ids live in a caller-owned blob: id i is `data[offsets[i] : offsets[i + 1]]`
 * (no terminator). The index stores only open-addressing slots (linear probing, load
 * factor <= 1/2): each 64-bit slot holds the upper 32 bits of the id's hash as a tag
 * and row + 1 (0 = empty), so a probe compares bytes only when the tags agree. At most
 * 2^32 - 2 ids.
 *
 * Batch lookups are software-pipelined: hash and prefetch the slot of id i, probe id
 * i - D, prefetch the blob bytes of id i - 2D, compare id i - 3D. With a large catalog
 * every step is a cache miss, and the pipeline keeps many of them in flight.
 *
 * The hash is a multiply-xorshift over 8-byte words with a final murmur3 fmix64.
 * Thread safety: after build() the index is read-only; concurrent lookups are safe.
 */
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "rankcore/types.h"

namespace rankcore {

/// 64-bit hash of a byte string.
inline std::uint64_t hash_bytes(const unsigned char* p, std::size_t n) noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(n) * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/**
 * @brief Check an id blob: offsets non-decreasing, within [0, data_len].
 * @param offsets   (n + 1,) int64
 * @param n         number of ids
 * @param data_len  bytes in the blob
 * @throws std::invalid_argument on a bad blob
 */
inline void validate_id_blob(const index_t* offsets, index_t n, index_t data_len) {
    if (n < 0) throw std::invalid_argument("offsets must have at least one element");
    if (offsets[0] < 0) throw std::invalid_argument("offsets[0] must be >= 0");
    for (index_t i = 0; i < n; ++i)
        if (offsets[i + 1] < offsets[i])
            throw std::invalid_argument("offsets must be non-decreasing (offsets[" + std::to_string(i + 1) +
                                        "] < offsets[" + std::to_string(i) + "])");
    if (offsets[n] > data_len)
        throw std::invalid_argument("offsets[-1]=" + std::to_string(offsets[n]) + " exceeds the blob size " +
                                    std::to_string(data_len));
}

/**
 * @brief Append the UTF-8 encoding of UCS-4 code points to `out`.
 * @return false if a code point is a surrogate or above U+10FFFF (such a string cannot be an id)
 */
inline bool append_utf8_from_ucs4(const std::uint32_t* s, std::size_t n, std::string& out) {
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t c = s[i];
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else if (c < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (c >> 6)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) return false;
            out.push_back(static_cast<char>(0xE0 | (c >> 12)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else if (c <= 0x10FFFF) {
            out.push_back(static_cast<char>(0xF0 | (c >> 18)));
            out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else {
            return false;
        }
    }
    return true;
}

/// Hash index over an id blob. The blob must outlive the index and must not change.
class IdIndex {
public:
    /**
     * @brief Index n ids. The blob must have passed validate_id_blob.
     * @param data     (offsets[n],) bytes
     * @param offsets  (n + 1,) int64
     * @param n        number of ids
     * @param dup      on a duplicate id: {first row, second row}; unchanged otherwise
     * @return false if two rows hold the same id (the index is then unusable)
     * @throws std::invalid_argument if n >= 2^32 - 1
     */
    bool build(const unsigned char* data, const index_t* offsets, index_t n, index_t dup[2]) {
        if (n >= index_t(0xffffffff)) throw std::invalid_argument("an IdIndex holds at most 2^32 - 2 ids");
        data_ = data;
        offsets_ = offsets;
        n_ = n;
        std::size_t capacity = 16;
        while (capacity < 2 * static_cast<std::size_t>(n)) capacity *= 2;
        mask_ = capacity - 1;
        slots_.assign(capacity, 0);
        std::vector<std::uint64_t> hashes(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) hashes[i] = hash_bytes(bytes(i), length(i));
        constexpr index_t ahead = 16;
        for (index_t i = 0; i < n; ++i) {
            if (i + ahead < n) prefetch_read(&slots_[hashes[i + ahead] & mask_]);
            const std::uint64_t h = hashes[i];
            const std::uint64_t tag = h >> 32;
            std::size_t pos = h & mask_;
            for (;;) {
                const std::uint64_t slot = slots_[pos];
                if (slot == 0) {
                    slots_[pos] = (tag << 32) | static_cast<std::uint64_t>(i + 1);
                    break;
                }
                if ((slot >> 32) == tag) {
                    const index_t other = static_cast<index_t>(slot & 0xffffffffu) - 1;
                    if (equal(other, bytes(i), length(i))) {
                        dup[0] = other;
                        dup[1] = i;
                        return false;
                    }
                }
                pos = (pos + 1) & mask_;
            }
        }
        return true;
    }

    /// Number of ids.
    index_t size() const noexcept { return n_; }

    /// Bytes of id `row` (0 <= row < size()).
    const unsigned char* bytes(index_t row) const noexcept { return data_ + offsets_[row]; }

    /// Byte length of id `row`.
    std::size_t length(index_t row) const noexcept { return static_cast<std::size_t>(offsets_[row + 1] - offsets_[row]); }

    /// Row of the id with these bytes, or -1.
    index_t find(const char* s, std::size_t len) const noexcept {
        return find_hashed(hash_bytes(reinterpret_cast<const unsigned char*>(s), len), s, len);
    }

    /**
     * @brief Rows of many ids at once, -1 for unknown ones.
     * @param s       (n,) pointers to the ids' UTF-8 bytes
     * @param len     (n,) byte lengths
     * @param out     (n,) int64 output rows
     * @param hashes  workspace, resized to n
     */
    void find_batch(const char* const* s, const std::size_t* len, index_t n, index_t* out,
                    std::vector<std::uint64_t>& hashes) const {
        constexpr index_t D = 8;
        hashes.resize(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n + 3 * D; ++i) {
            if (i < n) {
                const std::uint64_t h = hash_bytes(reinterpret_cast<const unsigned char*>(s[i]), len[i]);
                hashes[i] = h;
                prefetch_read(&slots_[h & mask_]);
            }
            index_t j = i - D;
            if (j >= 0 && j < n) {
                out[j] = first_tag_match(hashes[j]);
                if (out[j] >= 0) prefetch_read(offsets_ + out[j]);
            }
            j = i - 2 * D;
            if (j >= 0 && j < n && out[j] >= 0) prefetch_read(data_ + offsets_[out[j]]);
            j = i - 3 * D;
            if (j >= 0 && j < n && out[j] >= 0 && !equal(out[j], reinterpret_cast<const unsigned char*>(s[j]), len[j]))
                out[j] = find_hashed(hashes[j], s[j], len[j]);
        }
    }

private:
    bool equal(index_t row, const unsigned char* s, std::size_t len) const noexcept {
        return length(row) == len && (len == 0 || std::memcmp(bytes(row), s, len) == 0);
    }

    index_t first_tag_match(std::uint64_t h) const noexcept {
        const std::uint64_t tag = h >> 32;
        for (std::size_t pos = h & mask_;; pos = (pos + 1) & mask_) {
            const std::uint64_t slot = slots_[pos];
            if (slot == 0) return -1;
            if ((slot >> 32) == tag) return static_cast<index_t>(slot & 0xffffffffu) - 1;
        }
    }

    index_t find_hashed(std::uint64_t h, const char* s, std::size_t len) const noexcept {
        const std::uint64_t tag = h >> 32;
        for (std::size_t pos = h & mask_;; pos = (pos + 1) & mask_) {
            const std::uint64_t slot = slots_[pos];
            if (slot == 0) return -1;
            if ((slot >> 32) == tag) {
                const index_t row = static_cast<index_t>(slot & 0xffffffffu) - 1;
                if (equal(row, reinterpret_cast<const unsigned char*>(s), len)) return row;
            }
        }
    }

    const unsigned char* data_ = nullptr;
    const index_t* offsets_ = nullptr;
    index_t n_ = 0;
    std::size_t mask_ = 0;
    std::vector<std::uint64_t> slots_ = std::vector<std::uint64_t>(1, 0);
};

}  // namespace rankcore
