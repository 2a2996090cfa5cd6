/**
 * Where the time of one cold-row ranking goes, phase by phase, in the C++ kernel alone.
 *
 * Builds an N x d float32 table (advised for huge pages, as ItemTable does), then for each of
 * `lists` random candidate lists of K rows (enough lists to touch every row, so rows are cold)
 * times the active kernel's gather_dot, its softmax and order_desc_stable. Medians of per-list
 * means over 3 passes are printed in microseconds.
 *
 *   g++ -O3 -std=c++17 -Icpp/include benches/native_phases.cpp cpp/src/dispatch.cpp -o /tmp/phases -pthread
 *   /tmp/phases [N=2000000] [d=64] [K=500]
 *
 * Add -DRANKCORE_PREFETCH_LINES=<n> to try another prefetch depth (default in dot.h).
 */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "rankcore/score.h"

using namespace rankcore;

static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
    const index_t n_rows = argc > 1 ? std::atoll(argv[1]) : 2000000;
    const index_t dim = argc > 2 ? std::atoll(argv[2]) : 64;
    const index_t k = argc > 3 ? std::atoll(argv[3]) : 500;
    const index_t ld = (dim + 15) / 16 * 16;
    const index_t lists = std::max<index_t>(64, std::min<index_t>(8192, 2 * n_rows / k));
    std::vector<float, huge_page_allocator<float>> table(static_cast<std::size_t>(n_rows * ld), 0.f);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.f, 1.f / std::sqrt(float(dim)));
    for (index_t r = 0; r < n_rows; ++r)
        for (index_t c = 0; c < dim; ++c) table[static_cast<std::size_t>(r * ld + c)] = normal(rng);
    std::vector<float> user(static_cast<std::size_t>(dim));
    for (auto& x : user) x = normal(rng) * std::sqrt(float(dim));
    std::vector<index_t> pool(static_cast<std::size_t>(lists * k));
    std::uniform_int_distribution<index_t> pick(0, n_rows - 1);
    for (auto& x : pool) x = pick(rng);

    const KernelTable& kt = active_kernel();
    std::vector<float> logits(static_cast<std::size_t>(k)), scores(static_cast<std::size_t>(k));
    std::vector<index_t> order(static_cast<std::size_t>(k));
    SortScratch scratch;
    std::vector<double> gather, softmax, sort;
    for (int pass = 0; pass < 3; ++pass) {
        double tg = 0, ts = 0, to = 0;
        for (index_t j = 0; j < lists; ++j) {
            const index_t* rows = pool.data() + j * k;
            const double t0 = now();
            kt.gather_dot(table.data(), ld, dim, user.data(), rows, k, nullptr, logits.data());
            const double t1 = now();
            kt.softmax(logits.data(), k, scores.data());
            const double t2 = now();
            order_desc_stable(scores.data(), k, k, order.data(), scratch);
            const double t3 = now();
            tg += t1 - t0;
            ts += t2 - t1;
            to += t3 - t2;
        }
        gather.push_back(tg / double(lists) * 1e6);
        softmax.push_back(ts / double(lists) * 1e6);
        sort.push_back(to / double(lists) * 1e6);
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("N=%lld d=%lld K=%lld, %lld cold lists, kernel %s, prefetch %lld lines ahead\n", (long long)n_rows,
                (long long)dim, (long long)k, (long long)lists, kt.name, (long long)prefetch_lines);
    std::printf("  gather_dot %7.1f us\n  softmax    %7.1f us\n  sort       %7.1f us\n", median(gather),
                median(softmax), median(sort));
    return 0;
}
