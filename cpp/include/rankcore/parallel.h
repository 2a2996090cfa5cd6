/**
 * @file parallel.h
 * @brief The one worker pool of the kernels: items handed out in chunks through an atomic counter.
 *
 * `parallel_chunks<State>(n, chunk, n_threads, fn)` calls `fn(i, state)` for every i in [0, n) on
 * up to `n_threads` std::threads, the calling thread being one of them. Each thread owns one
 * default-constructed `State` (scratch buffers) for all its items. Threads that cannot be started
 * are not an error: the running ones finish the work. The first exception thrown by `fn` stops
 * the others from taking more work and is rethrown on the calling thread after every thread has
 * joined. Used by score.h (requests of a batch) and topk.h (cells of the scan grid).
 */
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "rankcore/types.h"

namespace rankcore {

template <class State, class Fn>
void parallel_chunks(index_t n, index_t chunk, index_t n_threads, Fn&& fn) {
    chunk = std::max<index_t>(1, chunk);
    std::atomic<index_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        State state;
        try {
            for (;;) {
                if (failed.load(std::memory_order_relaxed)) return;
                const index_t start = next.fetch_add(chunk, std::memory_order_relaxed);
                if (start >= n) return;
                const index_t stop = std::min(n, start + chunk);
                for (index_t i = start; i < stop; ++i) fn(i, state);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true, std::memory_order_relaxed);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(std::max<index_t>(0, n_threads - 1)));
    try {
        for (index_t t = 1; t < n_threads; ++t) pool.emplace_back(worker);
    } catch (const std::system_error&) {
        // Could not start more threads: the ones running plus this one finish the work.
    }
    worker();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace rankcore
