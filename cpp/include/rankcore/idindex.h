/**
 * @file idindex.h
 * @brief Hash index from string ids (UTF-8 bytes) to row numbers.
 *
 * The ids live in a caller-owned blob: id i is `data[offsets[i] : offsets[i + 1]]`
 * (no terminator). The index stores only open-addressing slots (linear probing, load
 * factor <= 1/2) of 16 bytes, four per cache line: row + 1 (0 = empty), the id's byte
 * length (saturated at 0xffff), 16 bits of its hash as a tag, and a 64-bit word that is
 * the id itself when it has at most 8 bytes (zero-padded, little-endian) and its blob
 * offset otherwise. So a short id (numeric ids up to 8 digits, say) is found or rejected
 * by reading its slots alone, and a longer one reads the blob only where tag and length
 * agree. At most 2^32 - 2 ids.
 *
 * Batch lookups are software-pipelined (find_batch): hash id i and prefetch its slot,
 * probe id i - L (and prefetch the blob bytes of a long id), compare the bytes of a long
 * id i - 2L. With a large catalog the slots and the bytes are cache misses; the pipeline
 * keeps many of them in flight instead of paying them one after the other.
 *
 * The hash is a multiply-xorshift over 8-byte words with a final murmur3 fmix64.
 * Thread safety: after build() the index is read-only; concurrent lookups are safe.
 *
 * Contents: hash_bytes, validate_id_blob, append_utf8_from_ucs4 (the UTF-8 form of NumPy
 * '<U' ids) and the IdIndex class. Sets of rows (the lookup results) are in rowset.h.
 */
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "rankcore/types.h"

/// Ids find_batch looks ahead: slots are prefetched this many ids before they are probed.
#ifndef RANKCORE_ID_LOOKAHEAD
#define RANKCORE_ID_LOOKAHEAD 8
#endif

namespace rankcore {

namespace detail {
inline std::uint64_t load_u64(const unsigned char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
}

inline std::uint64_t load_u32(const unsigned char* p) noexcept {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
}

/**
 * @brief The n <= 8 bytes at p as a zero-padded little-endian word (byte k in bits 8k..8k+7).
 * Fixed-size loads that overlap where n is not 1, 2, 4 or 8 (overlapping bytes are equal, so
 * OR-ing them is exact); never reads outside [p, p + n), and no byte loop: a variable-size
 * memcpy into a word compiles to one and stalls on store forwarding.
 */
inline std::uint64_t short_word(const unsigned char* p, std::size_t n) noexcept {
    if (n >= 4) {
        if (n == 8) return load_u64(p);
        return load_u32(p) | (load_u32(p + n - 4) << (8 * (n - 4)));
    }
    if (n == 0) return 0;
    return std::uint64_t(p[0]) | (std::uint64_t(p[n >> 1]) << (8 * (n >> 1))) | (std::uint64_t(p[n - 1]) << (8 * (n - 1)));
}

/// memcmp(a, b, n) == 0, inlined for ids of up to 16 bytes (overlapping fixed-size loads, no over-read).
inline bool bytes_equal(const unsigned char* a, const unsigned char* b, std::size_t n) noexcept {
    if (n > 16) return std::memcmp(a, b, n) == 0;
    if (n > 8) return ((load_u64(a) ^ load_u64(b)) | (load_u64(a + n - 8) ^ load_u64(b + n - 8))) == 0;
    return short_word(a, n) == short_word(b, n);
}
}  // namespace detail

/**
 * @brief 64-bit hash of a byte string.
 *
 * Whole 8-byte words are mixed one after the other; the last 1..8 bytes are the last 8
 * bytes of the string when n > 8 (overlapping the words already mixed) and short_word()
 * otherwise. n is mixed into the seed, so the final word still determines the string.
 */
inline std::uint64_t hash_bytes(const unsigned char* p, std::size_t n) noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(n) * 0xff51afd7ed558ccdull);
    std::uint64_t tail;
    if (n > 8) {
        const unsigned char* last = p + n - 8;
        for (std::size_t left = n; left > 8; left -= 8, p += 8) {
            h = (h ^ detail::load_u64(p)) * 0xbf58476d1ce4e5b9ull;
            h ^= h >> 31;
        }
        tail = detail::load_u64(last);
    } else {
        tail = detail::short_word(p, n);
    }
    h = (h ^ tail) * 0x94d049bb133111ebull;
    h ^= h >> 29;
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
    /// Ids looked ahead by find_batch.
    static constexpr index_t lookahead = RANKCORE_ID_LOOKAHEAD;

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
        slots_.assign(capacity, Slot{});
        std::vector<std::uint64_t> hashes(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) hashes[i] = hash_bytes(bytes(i), length(i));
        constexpr index_t ahead = 16;
        for (index_t i = 0; i < n; ++i) {
            if (i + ahead < n) prefetch_read(&slots_[hashes[i + ahead] & mask_]);
            const Key q = key(hashes[i], bytes(i), length(i));
            Slot* s = probe(q, hashes[i] & mask_);
            for (; s->row1 != 0; s = probe(q, next(s))) {
                if (verify(*s, bytes(i), length(i))) {
                    dup[0] = static_cast<index_t>(s->row1) - 1;
                    dup[1] = i;
                    return false;
                }
            }
            s->word = length(i) > 8 ? static_cast<std::uint64_t>(offsets[i]) : q.word;
            s->row1 = static_cast<std::uint32_t>(i + 1);
            s->len = q.len;
            s->tag = q.tag;
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
        const auto* p = reinterpret_cast<const unsigned char*>(s);
        const std::uint64_t h = hash_bytes(p, len);
        const Key q = key(h, p, len);
        for (const Slot* m = probe(q, h & mask_); m->row1 != 0; m = probe(q, next(m)))
            if (verify(*m, p, len)) return static_cast<index_t>(m->row1) - 1;
        return -1;
    }

    /**
     * @brief Rows of many ids at once, -1 for unknown ones.
     *
     * Software-pipelined over three stages `lookahead` (L) ids apart: (1) hash id i and
     * prefetch its home slot; (2) probe the slots of id i - L: an id of at most 8 bytes is
     * then found or known to be absent, a longer one has a candidate whose blob bytes are
     * prefetched; (3) compare the bytes of a long id i - 2L (a mismatch, i.e. a tag collision,
     * falls back to find()).
     *
     * @param s       (n,) pointers to the ids' UTF-8 bytes
     * @param len     (n,) byte lengths
     * @param out     (n,) int64 output rows
     * @param hashes  workspace, resized to n
     */
    void find_batch(const char* const* s, const std::size_t* len, index_t n, index_t* out,
                    std::vector<std::uint64_t>& hashes) const {
        constexpr index_t L = lookahead;
        hashes.resize(static_cast<std::size_t>(n));
        auto stage1 = [&](index_t i) {
            const std::uint64_t h = hash_bytes(reinterpret_cast<const unsigned char*>(s[i]), len[i]);
            hashes[i] = h;
            prefetch_read(&slots_[h & mask_]);
            prefetch_read(&slots_[(h + 3) & mask_]);  // the next line, for runs that cross it
        };
        auto stage2 = [&](index_t j) {
            const std::uint64_t h = hashes[j];
            const Key q = key(h, reinterpret_cast<const unsigned char*>(s[j]), len[j]);
            const Slot* m = probe(q, h & mask_);
            out[j] = static_cast<index_t>(m->row1) - 1;  // -1 for an empty slot
            if (m->row1 != 0 && len[j] > 8) {
                hashes[j] = m->word;  // blob offset, verified by stage 3
                if (m->len != 0xffff) prefetch_range(data_ + m->word, std::min<std::size_t>(len[j], 128));
            }
        };
        auto stage3 = [&](index_t j) {
            if (len[j] <= 8 || out[j] < 0) return;
            const auto* p = reinterpret_cast<const unsigned char*>(s[j]);
            const bool same = len[j] < 0xffff ? detail::bytes_equal(data_ + hashes[j], p, len[j])
                                              : equal_row(out[j], p, len[j]);
            if (!same) out[j] = find(s[j], len[j]);
        };
        index_t i = 0;
        for (; i < n && i < 2 * L; ++i) {
            stage1(i);
            if (i >= L) stage2(i - L);
        }
        for (; i < n; ++i) {  // steady state: no bounds checks
            stage1(i);
            stage2(i - L);
            stage3(i - 2 * L);
        }
        for (; i < n + 2 * L; ++i) {
            if (i - L >= 0 && i - L < n) stage2(i - L);
            if (i - 2 * L >= 0) stage3(i - 2 * L);
        }
    }

private:
    /// One open-addressing slot (16 bytes, four per cache line). row1 == 0 marks an empty slot.
    struct Slot {
        std::uint64_t word = 0;  ///< the id's bytes (<= 8 bytes, zero-padded) or its blob offset
        std::uint32_t row1 = 0;  ///< row + 1
        std::uint16_t len = 0;   ///< byte length, 0xffff for 0xffff bytes or more
        std::uint16_t tag = 0;   ///< bits 48..63 of the id's hash
    };

    /// What a slot must hold to be a candidate for an id.
    struct Key {
        std::uint64_t word;  ///< short_word of an id of <= 8 bytes, else 0 (unused)
        std::uint16_t len;
        std::uint16_t tag;
    };

    static Key key(std::uint64_t h, const unsigned char* p, std::size_t n) noexcept {
        return Key{n <= 8 ? detail::short_word(p, n) : 0, static_cast<std::uint16_t>(n < 0xffff ? n : 0xffff),
                   static_cast<std::uint16_t>(h >> 48)};
    }

    std::size_t next(const Slot* s) const noexcept {
        return (static_cast<std::size_t>(s - slots_.data()) + 1) & mask_;
    }

    /// First slot from `pos` on that is empty or a candidate for `q` (for an id of <= 8 bytes,
    /// a candidate is the id itself).
    const Slot* probe(const Key& q, std::size_t pos) const noexcept {
        const bool is_short = q.len <= 8;
        for (;; pos = (pos + 1) & mask_) {
            const Slot& s = slots_[pos];
            if (s.row1 == 0) return &s;
            if (s.tag == q.tag && s.len == q.len && (!is_short || s.word == q.word)) return &s;
        }
    }

    Slot* probe(const Key& q, std::size_t pos) noexcept {
        return const_cast<Slot*>(static_cast<const IdIndex*>(this)->probe(q, pos));
    }

    /// Whether the candidate slot `m` (as returned by probe for these bytes) holds these bytes.
    bool verify(const Slot& m, const unsigned char* s, std::size_t len) const noexcept {
        if (len <= 8) return true;
        if (m.len == 0xffff) return equal_row(static_cast<index_t>(m.row1) - 1, s, len);
        return detail::bytes_equal(data_ + m.word, s, len);
    }

    bool equal_row(index_t row, const unsigned char* s, std::size_t len) const noexcept {
        return length(row) == len && detail::bytes_equal(bytes(row), s, len);
    }

    const unsigned char* data_ = nullptr;
    const index_t* offsets_ = nullptr;
    index_t n_ = 0;
    std::size_t mask_ = 0;
    std::vector<Slot, huge_page_allocator<Slot>> slots_ = std::vector<Slot, huge_page_allocator<Slot>>(1);
};

}  // namespace rankcore
