/**
 * @file test_native.cpp
 * @brief Standalone C++ checks of the rankcore headers (no Python), meant to run under
 *        AddressSanitizer + UndefinedBehaviorSanitizer with leak detection (.ci/sanitize.sh).
 *
 * Covers, for every kernel this CPU supports: dot products on all lengths 0..130 (tails),
 * the AVX2 exp against std::exp (<= 2 ulp for x in [-87, 0]; absolute 1e-37 below, where
 * results are subnormal), softmax against a double reference, the ordering paths against
 * std::stable_sort, batched score/rank on random problems (padding, top-k, threads,
 * table rows with ld > dim) against a double oracle, error messages, IdIndex, and the row
 * sets of rowset.h.
 * Inputs are exact-size heap buffers so any overread is an ASAN report.
 *
 * Tolerances: float32 dots within 1e-5 relative to sum|a_i b_i|; scores within 1e-6
 * absolute of the double oracle (inputs scaled so logits are O(1)).
 */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rankcore/dispatch.h"
#include "rankcore/idindex.h"
#include "rankcore/rowset.h"
#include "rankcore/score.h"

using namespace rankcore;

static int failures = 0;
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            ++failures;                                                      \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                               \
            std::fprintf(stderr, "\n");                                      \
        }                                                                    \
    } while (0)

static std::mt19937_64 rng(12345);

static std::vector<float> randn(std::size_t n, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

static void test_dot(const KernelTable& kt) {
    for (std::size_t n = 0; n <= 130; ++n) {
        auto a = randn(n), b = randn(n);
        double ref = 0, mag = 0;
        for (std::size_t i = 0; i < n; ++i) {
            ref += double(a[i]) * b[i];
            mag += std::fabs(double(a[i]) * b[i]);
        }
        const float got = kt.dot(a.data(), b.data(), n);
        CHECK(std::fabs(got - ref) <= 1e-5 * mag + 1e-30, "%s dot n=%zu got %g want %g", kt.name, n, got, ref);
        CHECK(std::fabs(dot_f32_f64_serial(a.data(), b.data(), n) - ref) <= 1e-12 * mag + 1e-300, "f64 dot n=%zu", n);
    }
}

static double ulp_diff(float a, float b) {
    return std::fabs(double(a) - double(b)) / double(std::nextafter(std::fabs(b), INFINITY) - std::fabs(b));
}

static void test_exp() {
#if defined(RANKCORE_X86_64)
    if (!find_kernel("avx2")) return;
    double worst = 0;
    for (int i = 0; i < 200000; ++i) {
        float x[8], y[8];
        for (float& v : x) v = -std::uniform_real_distribution<float>(0.f, 110.f)(rng);
        if (i == 0) {
            x[0] = 0.f;
            x[1] = -0.f;
            x[2] = -87.3f;
            x[3] = -103.9f;
            x[4] = -104.f;
            x[5] = -1e30f;
            x[6] = -INFINITY;
            x[7] = 1e-8f;
        }
        struct Run {
            RANKCORE_TARGET_AVX2 static void go(const float* in, float* out) {
                _mm256_storeu_ps(out, exp_f32_avx2(_mm256_loadu_ps(in)));
            }
        };
        Run::go(x, y);
        for (int j = 0; j < 8; ++j) {
            const float want = std::exp(x[j]);
            if (x[j] >= -87.f) {
                const double u = ulp_diff(y[j], want);
                worst = std::max(worst, u);
                CHECK(u <= 2.0, "exp(%.9g) = %.9g, want %.9g (%.2f ulp)", x[j], y[j], want, u);
            } else {
                CHECK(std::fabs(y[j] - want) <= 1e-37f && y[j] >= 0.f, "exp(%.9g) = %g, want %g", x[j], y[j], want);
            }
        }
    }
    std::printf("avx2 exp: worst %.2f ulp on [-87, 0]\n", worst);
#endif
}

static void test_softmax(const KernelTable& kt) {
    for (index_t n : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 500, 1001}) {
        auto l = randn(static_cast<std::size_t>(n), 3.f);
        std::vector<float> s(static_cast<std::size_t>(n));
        CHECK(kt.softmax(l.data(), n, s.data()), "%s softmax n=%ld refused finite input", kt.name, (long)n);
        double m = -INFINITY, sum = 0;
        for (float x : l) m = std::max(m, double(x));
        for (float x : l) sum += std::exp(double(x) - m);
        double total = 0;
        for (index_t i = 0; i < n; ++i) {
            const double want = std::exp(double(l[i]) - m) / sum;
            CHECK(std::fabs(s[i] - want) <= 1e-6, "%s softmax n=%ld i=%ld", kt.name, (long)n, (long)i);
            total += s[i];
        }
        if (n) CHECK(std::fabs(total - 1) <= 1e-5, "%s softmax sum %g", kt.name, total);
        if (n) {
            for (float bad : {NAN, INFINITY, -INFINITY}) {
                auto l2 = l;
                l2[static_cast<std::size_t>(n - 1)] = bad;
                CHECK(!kt.softmax(l2.data(), n, s.data()), "%s softmax accepted %g", kt.name, bad);
            }
        }
    }
}

static void test_order() {
    SortScratch scratch;
    for (index_t n : {1, 2, 5, 32, 33, 100, 500, 1000, 4096, 4097, 10000}) {
        for (int variant = 0; variant < 5; ++variant) {
            std::vector<float> s(static_cast<std::size_t>(n));
            for (index_t i = 0; i < n; ++i) {
                switch (variant) {
                    case 0: s[i] = std::uniform_real_distribution<float>(0, 1)(rng); break;
                    case 1: s[i] = float(rng() % 7) * 0.125f; break;                     // many ties
                    case 2: s[i] = i == 3 ? 1.f : 1e-20f * (1 + float(rng() % 50)); break;  // skewed
                    case 3: s[i] = std::exp(std::normal_distribution<float>(0, 1)(rng)); break;  // softmax-like
                    default: s[i] = std::normal_distribution<float>(0, 10)(rng);          // negatives too
                }
            }
            std::vector<index_t> want(static_cast<std::size_t>(n));
            std::iota(want.begin(), want.end(), 0);
            std::stable_sort(want.begin(), want.end(), [&](index_t a, index_t b) { return s[a] > s[b]; });
            for (index_t k : {index_t(1), std::min<index_t>(n, 3), n / 2, n}) {
                if (k <= 0) continue;
                std::vector<index_t> got(static_cast<std::size_t>(k));
                order_desc_stable(s.data(), n, k, got.data(), scratch);
                CHECK(std::equal(got.begin(), got.end(), want.begin()), "order n=%ld k=%ld variant=%d", (long)n,
                      (long)k, variant);
            }
        }
    }
}

struct RandomProblem {
    std::vector<float> users, table, bias;
    std::vector<index_t> candidates, offsets;
    Problem p;
};

static RandomProblem make_problem(index_t dim, index_t ld, index_t n_rows, index_t n_requests, bool padded,
                                  bool with_bias) {
    RandomProblem r;
    r.table = randn(static_cast<std::size_t>(n_rows * ld));
    r.users = randn(static_cast<std::size_t>(n_requests * dim), 1.f / std::sqrt(float(dim)));
    if (with_bias) r.bias = randn(static_cast<std::size_t>(n_rows), 0.1f);
    r.offsets.push_back(0);
    for (index_t b = 0; b < n_requests; ++b) {
        const index_t k = static_cast<index_t>(rng() % 3 == 0 ? rng() % 3 : rng() % 600);
        for (index_t j = 0; j < k; ++j)
            r.candidates.push_back(padded && rng() % 8 == 0 ? -1 : static_cast<index_t>(rng() % n_rows));
        r.offsets.push_back(static_cast<index_t>(r.candidates.size()));
    }
    r.candidates.shrink_to_fit();
    r.p.users = r.users.data();
    r.p.table = r.table.data();
    r.p.n_rows = n_rows;
    r.p.ld = ld;
    r.p.dim = dim;
    r.p.bias = with_bias ? r.bias.data() : nullptr;
    r.p.candidates = r.candidates.data();
    r.p.n_candidates = static_cast<index_t>(r.candidates.size());
    r.p.offsets = r.offsets.data();
    r.p.n_requests = n_requests;
    r.p.padded = padded;
    return r;
}

static void test_batches(const KernelTable& kt) {
    for (int trial = 0; trial < 12; ++trial) {
        const index_t dim = 1 + static_cast<index_t>(rng() % 70);
        const index_t ld = trial % 2 ? dim : (dim + 15) / 16 * 16;
        const bool padded = trial % 3 != 0;
        RandomProblem r = make_problem(dim, ld, 1 + static_cast<index_t>(rng() % 3000), 1 + trial * 3, padded, trial % 4 != 1);
        const Problem& p = r.p;
        const index_t n = p.n_candidates;
        std::vector<float> s(static_cast<std::size_t>(n)), l(static_cast<std::size_t>(n));
        validate_problem(p);
        score_batch(p, kt, s.data(), l.data(), 1 + trial % 3);
        for (index_t b = 0; b < p.n_requests; ++b) {
            std::vector<double> logits;
            double m = -INFINITY;
            for (index_t j = p.offsets[b]; j < p.offsets[b + 1]; ++j) {
                const index_t c = p.candidates[j];
                if (c < 0) {
                    CHECK(s[j] == 0.f && l[j] == -INFINITY, "padding output");
                    continue;
                }
                double x = dot_f32_f64_serial(static_cast<const float*>(p.table) + c * ld, p.users + b * dim, static_cast<std::size_t>(dim));
                if (p.bias) x += p.bias[c];
                logits.push_back(x);
                m = std::max(m, x);
            }
            double sum = 0;
            for (double x : logits) sum += std::exp(x - m);
            std::size_t i = 0;
            for (index_t j = p.offsets[b]; j < p.offsets[b + 1]; ++j) {
                if (p.candidates[j] < 0) continue;
                const double want = std::exp(logits[i] - m) / sum;
                CHECK(std::fabs(s[j] - want) <= 1e-6, "%s score trial %d b=%ld j=%ld got %g want %g", kt.name, trial,
                      (long)b, (long)j, s[j], want);
                CHECK(std::fabs(l[j] - logits[i]) <= 1e-4 * (1 + std::fabs(logits[i])), "logit");
                ++i;
            }
        }
        for (index_t k : {index_t(-1), index_t(0), index_t(1), index_t(7)}) {
            std::vector<index_t> oo(static_cast<std::size_t>(p.n_requests + 1));
            validate_problem(p, k, oo.data());
            const std::size_t total = static_cast<std::size_t>(oo.back());
            std::vector<index_t> pos(total), items(total);
            std::vector<float> rs(total), rl(total);
            rank_batch(p, kt, oo.data(), pos.data(), items.data(), rs.data(), rl.data(), 1 + trial % 3);
            for (index_t b = 0; b < p.n_requests; ++b) {
                const index_t begin = p.offsets[b];
                std::vector<index_t> want;
                for (index_t j = 0; j < p.offsets[b + 1] - begin; ++j)
                    if (p.candidates[begin + j] >= 0) want.push_back(j);
                std::stable_sort(want.begin(), want.end(),
                                 [&](index_t x, index_t y) { return s[begin + x] > s[begin + y]; });
                for (index_t i = oo[b]; i < oo[b + 1]; ++i) {
                    const index_t j = want[static_cast<std::size_t>(i - oo[b])];
                    CHECK(pos[i] == j && items[i] == p.candidates[begin + j] && rs[i] == s[begin + j] &&
                              rl[i] == l[begin + j],
                          "%s rank trial %d b=%ld i=%ld", kt.name, trial, (long)b, (long)(i - oo[b]));
                }
            }
        }
    }
}

template <class E, class F>
static void expect_throw(F&& f, const std::string& message) {
    try {
        f();
        CHECK(false, "expected an exception: %s", message.c_str());
    } catch (const E& e) {
        CHECK(message.empty() || std::string(e.what()) == message, "message '%s' != '%s'", e.what(), message.c_str());
    }
}

static void test_errors(const KernelTable& kt) {
    RandomProblem r = make_problem(8, 8, 50, 3, false, true);
    std::vector<index_t> c = {1, 2, 3, 4, 50, 5};
    std::vector<index_t> off = {0, 3, 6, 6};
    Problem p = r.p;
    p.candidates = c.data();
    p.n_candidates = 6;
    p.offsets = off.data();
    expect_throw<std::out_of_range>([&] { validate_problem(p); },
                                    "candidate 50 out of range for an item table of 50 rows (request 1, position 1)");
    c[4] = -1;
    expect_throw<std::out_of_range>([&] { validate_problem(p); },
                                    "candidate -1 out of range for an item table of 50 rows (request 1, position 1)");
    p.padded = true;
    validate_problem(p);
    off[1] = 7;
    expect_throw<std::invalid_argument>([&] { validate_problem(p); }, "");
    off[1] = 3;
    off[3] = 5;
    expect_throw<std::invalid_argument>([&] { validate_problem(p); }, "");
    off[3] = 6;
    expect_throw<std::invalid_argument>([&] { validate_problem(p, -2); }, "");
    Problem q = p;
    q.ld = 4;
    expect_throw<std::invalid_argument>([&] { validate_problem(q); }, "");
    q = p;
    q.dim = 0;
    expect_throw<std::invalid_argument>([&] { validate_problem(q); }, "");
    // NaN in a row: double fallback throws, from a worker thread too.
    r.table[5 * 8 + 3] = NAN;
    std::vector<float> s(6), l(6);
    for (int threads : {1, 3}) {
        expect_throw<std::invalid_argument>(
            [&] { score_batch(p, kt, s.data(), l.data(), threads); },
            "non-finite logit for item row 5 (request 1): the item table, bias or user vector contains NaN or inf");
    }
    // Overflow: double path gives finite scores.
    RandomProblem o = make_problem(2, 2, 2, 1, false, false);
    o.table = {1e30f, 1e30f, -1e30f, -1e30f};
    o.users = {1e30f, 1e30f};
    o.p.table = o.table.data();
    o.p.users = o.users.data();
    std::vector<index_t> oc = {0, 1};
    std::vector<index_t> oo = {0, 2};
    o.p.candidates = oc.data();
    o.p.offsets = oo.data();
    o.p.n_candidates = 2;
    std::vector<float> os(2), ol(2);
    score_batch(o.p, kt, os.data(), ol.data(), 1);
    CHECK(os[0] == 1.f && os[1] == 0.f && ol[0] == INFINITY && ol[1] == -INFINITY, "overflow path");
}

static void test_idindex() {
    std::vector<std::string> ids = {"a", "", "bb", "\xc3\xbc", "item-000001", std::string("x\0y", 3)};
    for (int i = 0; i < 5000; ++i) ids.push_back("id-" + std::to_string(i * 7919));
    std::string data;
    std::vector<index_t> offsets = {0};
    for (const auto& s : ids) {
        data += s;
        offsets.push_back(static_cast<index_t>(data.size()));
    }
    std::vector<unsigned char> blob(data.begin(), data.end());
    const index_t n = static_cast<index_t>(ids.size());
    validate_id_blob(offsets.data(), n, static_cast<index_t>(blob.size()));
    IdIndex ix;
    index_t dup[2] = {-1, -1};
    CHECK(ix.build(blob.data(), offsets.data(), n, dup), "build");
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    std::vector<std::string> queries;
    for (index_t i = 0; i < n; ++i) queries.push_back(ids[static_cast<std::size_t>(i)]);
    queries.push_back("missing");
    queries.push_back("id-");
    for (const auto& q : queries) {
        ptrs.push_back(q.data());
        lens.push_back(q.size());
    }
    std::vector<index_t> out(queries.size());
    std::vector<std::uint64_t> hashes;
    ix.find_batch(ptrs.data(), lens.data(), static_cast<index_t>(queries.size()), out.data(), hashes);
    for (index_t i = 0; i < n; ++i) CHECK(out[i] == i && ix.find(ids[i].data(), ids[i].size()) == i, "find %ld", (long)i);
    CHECK(out[n] == -1 && out[n + 1] == -1, "unknown ids");
    // Inline (<= 8 bytes) and blob-referenced ids of every length, with 0xFF bytes (not UTF-8,
    // but the index works on bytes), and same-length near misses at every position.
    {
        std::vector<std::string> lid;
        for (std::size_t n = 0; n <= 24; ++n) {
            lid.push_back(std::string(n, '\xff'));
            if (n) lid.push_back(std::string(n - 1, '\xff') + 'a');
        }
        lid.push_back(std::string(70000, 'q'));
        std::string ld;
        std::vector<index_t> lo = {0};
        for (const auto& s : lid) {
            ld += s;
            lo.push_back(static_cast<index_t>(ld.size()));
        }
        std::vector<unsigned char> lb(ld.begin(), ld.end());
        IdIndex lix;
        const index_t ln = static_cast<index_t>(lid.size());
        CHECK(lix.build(lb.data(), lo.data(), ln, dup), "build (lengths)");
        std::vector<std::string> q = lid;
        for (const auto& s : lid)
            for (std::size_t k = 0; k < s.size() && k < 24; ++k) {
                std::string t = s;
                t[k] = 'b';
                q.push_back(t);
            }
        q.push_back(std::string(70000, 'q') + 'q');
        std::vector<const char*> qp;
        std::vector<std::size_t> ql;
        for (const auto& s : q) {
            qp.push_back(s.data());
            ql.push_back(s.size());
        }
        std::vector<index_t> qo(q.size());
        lix.find_batch(qp.data(), ql.data(), static_cast<index_t>(q.size()), qo.data(), hashes);
        for (std::size_t i = 0; i < q.size(); ++i) {
            const index_t want = i < lid.size() ? static_cast<index_t>(i) : -1;
            CHECK(qo[i] == want && lix.find(q[i].data(), q[i].size()) == want, "length test %zu", i);
        }
    }
    std::vector<index_t> off2 = {0, 1, 2};
    std::vector<unsigned char> aa = {'a', 'a'};
    IdIndex dupix;
    CHECK(!dupix.build(aa.data(), off2.data(), 2, dup) && dup[0] == 0 && dup[1] == 1, "duplicate");
    std::vector<index_t> bad = {0, 2, 1};
    expect_throw<std::invalid_argument>([&] { validate_id_blob(bad.data(), 2, 2); }, "");
    IdIndex empty;
    CHECK(empty.find("a", 1) == -1, "empty index");
    std::string u;
    const std::uint32_t cps[] = {0x61, 0xFC, 0x65E5, 0x1F642};
    CHECK(append_utf8_from_ucs4(cps, 4, u) && u == "a\xc3\xbc\xe6\x97\xa5\xf0\x9f\x99\x82", "utf8");
    const std::uint32_t surrogate[] = {0xD800};
    CHECK(!append_utf8_from_ucs4(surrogate, 1, u), "surrogate");
}

static void test_all_known_distinct() {
    std::vector<index_t> scratch;
    std::mt19937_64 rng(7);
    for (index_t n : {0, 1, 2, 15, 16, 17, 500, 5000}) {
        std::vector<index_t> rows(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i * 7919 + (i % 3) * 1000003;
        std::shuffle(rows.begin(), rows.end(), rng);
        CHECK(all_known_distinct(rows.data(), n, scratch), "distinct rows n=%ld", (long)n);
        if (n >= 2) {
            auto dup = rows;
            dup[static_cast<std::size_t>(n - 1)] = dup[static_cast<std::size_t>((n - 1) / 2)];
            CHECK(!all_known_distinct(dup.data(), n, scratch), "duplicate missed n=%ld", (long)n);
            auto unknown = rows;
            unknown[static_cast<std::size_t>(n / 2)] = -1;
            CHECK(!all_known_distinct(unknown.data(), n, scratch), "unknown missed n=%ld", (long)n);
        }
    }
    const index_t same[3] = {0, 0, 0};
    CHECK(!all_known_distinct(same, 3, scratch), "zeros repeat");
}

static void test_rows_in() {
    std::vector<index_t> scratch;
    std::mt19937_64 rng(11);
    const index_t lowest = std::numeric_limits<index_t>::min();
    for (index_t m : {0, 1, 5, 100, 9000}) {
        std::vector<index_t> values(static_cast<std::size_t>(m));
        for (auto& v : values) v = static_cast<index_t>(rng() % 20000) - 5;
        if (m > 3) values[1] = lowest;  // the set's own empty marker is a value like any other
        std::vector<index_t> rows(3000);
        for (auto& r : rows) r = static_cast<index_t>(rng() % 20000) - 5;
        rows[7] = lowest;
        std::vector<char> got(rows.size());
        rows_in(values.data(), m, rows.data(), static_cast<index_t>(rows.size()), reinterpret_cast<bool*>(got.data()),
                scratch);
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const bool want = std::find(values.begin(), values.end(), rows[i]) != values.end();
            CHECK(bool(got[i]) == want, "rows_in m=%ld row %ld", (long)m, (long)rows[i]);
        }
    }
}

int main() {
    for (const std::string& name : available_kernel_names()) {
        const KernelTable& kt = *find_kernel(name);
        std::printf("kernel %s\n", kt.name);
        test_dot(kt);
        test_softmax(kt);
        test_batches(kt);
        test_errors(kt);
    }
    test_exp();
    test_order();
    test_idindex();
    test_all_known_distinct();
    test_rows_in();
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all native checks passed\n");
    return 0;
}
