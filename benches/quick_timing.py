"""Quick timing of rankcore._core against NumPy and faiss baselines (a plain script).

Workload: N=2,000,000 items x d=64 float32 (512 MB, 64-byte aligned, huge pages advised),
K=500 random candidates per call. Prints median microseconds per single call and batch
throughput. Run: PYTHONPATH=src python benches/quick_timing.py [--n 2000000] [--threads 2]
"""

import argparse
import mmap
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from rankcore import _core  # noqa: E402


def aligned_table(n, d, seed=0):
    nbytes = n * d * 4
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)
    table = np.frombuffer(buf, dtype=np.float32).reshape(n, d)
    rng = np.random.default_rng(seed)
    for start in range(0, n, 1 << 18):
        stop = min(n, start + (1 << 18))
        table[start:stop] = rng.standard_normal((stop - start, d), dtype=np.float32) * 0.1
    return table


def median_us(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e6 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()
    n, d, K = args.n, args.d, args.k
    table = aligned_table(n, d)
    rng = np.random.default_rng(1)
    print(_core.build_info())
    cand_sets = [rng.integers(0, n, K) for _ in range(256)]
    user = rng.standard_normal((1, d), dtype=np.float32)
    it = iter(range(10**9))

    def naive():
        c = cand_sets[next(it) % 256]
        logits = table[c] @ user[0]
        e = np.exp(logits - logits.max())
        s = e / e.sum()
        o = np.argsort(-s, kind="stable")
        return c[o], s[o]

    def cpp():
        c = cand_sets[next(it) % 256]
        return _core.rank(user, table, None, d, c, None, False, -1, 1)

    results = {"numpy": median_us(naive, args.reps)}
    try:
        import faiss

        out = np.empty(K, dtype=np.float32)
        xp, up = faiss.swig_ptr(table), faiss.swig_ptr(user)

        def fa():
            c = cand_sets[next(it) % 256]
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(out), up, xp, faiss.swig_ptr(c), d, 1, K)
            e = np.exp(out - out.max())
            s = e / e.sum()
            o = np.argsort(-s, kind="stable")
            return c[o], s[o]

        results["faiss"] = median_us(fa, args.reps)
    except ImportError:
        pass
    for kernel in _core.available_kernels():
        _core.set_kernel(kernel)
        results[f"cpp-{kernel}"] = median_us(cpp, args.reps)
    for name, us in results.items():
        print(f"single d={d} K={K} N={n}: {name:12s} {us:8.1f} us")
    best = results[f"cpp-{_core.available_kernels()[-1]}"]
    print(f"speedup vs numpy {results['numpy'] / best:.2f}x" + (f", vs faiss {results['faiss'] / best:.2f}x" if "faiss" in results else ""))

    B = args.batch
    users = rng.standard_normal((B, d), dtype=np.float32)
    offsets = (np.arange(B + 1) * K).astype(np.int64)
    cands = rng.integers(0, n, B * K)
    for threads in sorted({1, args.threads}):
        us = median_us(lambda: _core.rank(users, table, None, d, cands, offsets, False, -1, threads), 15)
        print(f"batch B={B} K={K} threads={threads}: {us / 1e3:.1f} ms, {B * K / us:.1f} M items/s")


if __name__ == "__main__":
    main()


def idindex_timing(n=2_000_000, q=500, reps=300):
    """IdIndex build and 500-id lookup against a dict on a catalog of n ids."""
    ids = [f"item-{i:08d}" for i in range(n)]
    t = time.perf_counter()
    ix = _core.IdIndex(ids)
    build_ms = 1e3 * (time.perf_counter() - t)
    t = time.perf_counter()
    d = {s: i for i, s in enumerate(ids)}
    dict_ms = 1e3 * (time.perf_counter() - t)
    rng = np.random.default_rng(2)
    queries = [[f"item-{r:08d}" for r in rng.integers(0, n + n // 10, q)] for _ in range(64)]
    it = iter(range(10**9))
    us_dict = median_us(lambda: np.array([d.get(x, -1) for x in queries[next(it) % 64]], dtype=np.int64), reps)
    us_ix = median_us(lambda: ix.lookup(queries[next(it) % 64]), reps)
    print(f"IdIndex n={n}: build {build_ms:.0f} ms (dict {dict_ms:.0f} ms); lookup {q}: "
          f"dict {us_dict:.1f} us, IdIndex {us_ix:.1f} us ({us_dict / us_ix:.1f}x)")


if __name__ == "__main__" and os.environ.get("RANKCORE_BENCH_IDS", "1") == "1":
    idindex_timing()
