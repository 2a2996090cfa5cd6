"""Compressed item tables: single call, rank_batch and top-K per storage dtype, as ratios to float32.

Every dtype is timed in the same run, interleaved (each repetition runs every dtype back to back on
the same requests), on cold rows: the candidate lists rotate through a pool that touches every row
of the table, so rows come from DRAM as in serving. Prints ``rankcore.build_info()`` first, then
medians and the ratios float32 time / dtype time (single call, native kernel on the raw table),
M items/s of ``rank_batch`` and the table bytes. Each ratio is the median over repetitions of the
ratio within one repetition (the dtypes of a repetition run back to back), which cancels most of
the drift of a shared machine's memory bandwidth between repetitions.

    PYTHONPATH=src python benches/dtypes.py [--n 2000000] [--d 64] [--k 500] [--reps 5]
"""
import argparse
import json
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import rankcore  # noqa: E402
from rankcore.core import native  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16", "int8")


def tables(n: int, d: int) -> dict:
    rng = np.random.default_rng(0)
    t32 = rankcore.ItemTable(rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d))
    out = {"float32": t32}
    for dt in DTYPES[1:]:
        out[dt] = rankcore.ItemTable(t32.embeddings, dtype=dt)
    return out


def single_call(tabs: dict, user, pool, reps: int) -> dict:
    """µs of one rank_one call (the native single-call entry point, k = all) per dtype, per repetition."""
    rank_one = native.function("rank_one")
    times = {dt: [] for dt in tabs}
    i = 0
    for _ in range(reps):
        for dt, t in tabs.items():
            start = time.perf_counter()
            for j in range(len(pool)):
                rank_one(user, t.data, None, t.dim, pool[(i + j) % len(pool)], None, rankcore.Ranking, t.row_scale)
            times[dt].append((time.perf_counter() - start) / len(pool) * 1e6)
        i += len(pool) // 3
    return {dt: np.asarray(v) for dt, v in times.items()}


def batch(tabs: dict, users, pool, reps: int, threads: int, calls: int = 8) -> dict:
    """M candidate items/s of rank_batch (B users x K candidates, k=10) per dtype, per repetition
    (each repetition times ``calls`` consecutive calls on different lists)."""
    rates = {dt: [] for dt in tabs}
    b = users.shape[0]
    for r in range(reps):
        for dt, t in tabs.items():
            lists = [pool[((r * calls + c) * b) % (len(pool) - b):][:b] for c in range(calls)]
            start = time.perf_counter()
            for cands in lists:
                rankcore.rank_batch(users, t, cands, k=10, threads=threads)
            rates[dt].append(calls * lists[0].size / (time.perf_counter() - start) / 1e6)
    return {dt: np.asarray(v) for dt, v in rates.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=int(os.environ.get("RANKCORE_BENCH_ITEMS", 2_000_000)))
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256, help="users per rank_batch call")
    ap.add_argument("--threads", type=int, default=1, help="rank_batch threads")
    args = ap.parse_args(argv)
    print(json.dumps(rankcore.build_info(), indent=1, default=str))
    tabs = tables(args.n, args.d)
    rng = np.random.default_rng(1)
    n_lists = max(2 * args.batch, min(8192, 2 * args.n // args.k))
    pool = rng.integers(0, args.n, (n_lists, args.k))
    user = (rng.standard_normal(args.d) / np.sqrt(args.d)).astype(np.float32)
    users = (rng.standard_normal((args.batch, args.d)) / np.sqrt(args.d)).astype(np.float32)
    single_call(tabs, user, pool[:200], 1)  # warm-up
    one = single_call(tabs, user, pool, args.reps)
    many = batch(tabs, users, pool, args.reps, args.threads)
    print(f"\nN={args.n} d={args.d} K={args.k} kernel={native.core.active_kernel()} reps={args.reps}")
    print("speed-up: the median over repetitions of float32 time / dtype time within the same repetition")
    print(f"{'dtype':9} {'bytes':>12} {'smaller':>8} {'single µs':>10} {'speed-up':>9} "
          f"{'batch M/s':>10} {'speed-up':>9}")
    for dt, t in tabs.items():
        s_up = float(np.median(one["float32"] / one[dt]))
        b_up = float(np.median(many[dt] / many["float32"]))
        print(f"{dt:9} {t.nbytes:12d} {tabs['float32'].nbytes / t.nbytes:7.2f}x {np.median(one[dt]):10.2f} "
              f"{s_up:8.2f}x {np.median(many[dt]):10.1f} {b_up:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
