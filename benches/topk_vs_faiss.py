"""Exact catalog-wide top-K against faiss ``IndexFlatIP.search`` and a read-bandwidth probe, one run.

Cases (sizes from the environment: ``RANKCORE_BENCH_ITEMS`` rows, default 2,000,000; d = 64):

- one user, top-25, one thread: ``rankcore.topk(..., threads=1)`` vs faiss with
  ``faiss.omp_set_num_threads(1)`` on the bias-augmented vectors (item ``[e, bias]``, user ``[u, 1]``,
  so the inner product is ``u . e + bias``), vs reading the table once (NumPy ``sum`` of the padded
  rows, one thread: the time to stream the bytes the scan must read);
- a batch of ``RANKCORE_BENCH_USERS`` users (default 1,000), top-25: ``rankcore.topk_batch`` vs faiss
  ``search`` with the same batch, both on the same number of threads (``--threads``, default all
  cores).

Each figure is the best of ``--repeat`` runs (wall clock); single-thread cases also give the
thread's CPU time, which is less disturbed by other processes on a shared machine. rankcore also
computes the softmax normaliser over the whole catalog; faiss returns raw inner products only.
Run: ``python benches/topk_vs_faiss.py [--repeat 5] [--threads N]``.
"""
import argparse
import json
import os
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import rankcore  # noqa: E402

try:
    import faiss  # noqa: E402
except ImportError:  # pragma: no cover - optional baseline
    faiss = None


def best(fn, repeat):
    """(best wall seconds, CPU seconds of this thread in that run)."""
    out = (float("inf"), float("inf"))
    for _ in range(repeat):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.thread_time()
        out = min(out, (t1 - t0, c1 - c0))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    n = int(os.environ.get("RANKCORE_BENCH_ITEMS", "2000000"))
    n_users = int(os.environ.get("RANKCORE_BENCH_USERS", "1000"))
    d, k = 64, 25
    print(json.dumps(rankcore.build_info(), default=str))
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, d), dtype=np.float32)
    emb *= np.float32(1 / np.sqrt(d))
    bias = (0.1 * rng.standard_normal(n)).astype(np.float32)
    table = rankcore.ItemTable(emb, bias)
    augmented = np.empty((n, d + 1), dtype=np.float32)
    augmented[:, :d] = emb
    augmented[:, d] = bias
    del emb
    users = rng.standard_normal((n_users, d)).astype(np.float32)
    users_aug = np.hstack([users, np.ones((n_users, 1), dtype=np.float32)])
    rows = {}

    # ---- one user, one thread
    rows["read table (numpy sum, 1 thread)"] = best(lambda: table.data.sum(), args.repeat)
    rankcore.topk(users[0], table, k, threads=1)
    rows["rankcore topk, 1 user, 1 thread"] = best(lambda: rankcore.topk(users[0], table, k, threads=1),
                                                   args.repeat)
    if faiss is not None:
        index = faiss.IndexFlatIP(d + 1)
        index.add(augmented)
        faiss.omp_set_num_threads(1)
        rows["faiss IndexFlatIP, 1 user, 1 thread"] = best(lambda: index.search(users_aug[:1], k), args.repeat)
        got = rankcore.topk(users[0], table, k, threads=1).items
        _, ref = index.search(users_aug[:1], k)
        print(f"top-{k} overlap with faiss (1 user): {len(set(got.tolist()) & set(ref[0].tolist()))}/{k}")

    # ---- a batch
    t = args.threads
    rankcore.topk_batch(users[:8], table, k, threads=t)
    rows[f"rankcore topk_batch, {n_users} users, {t} threads"] = best(
        lambda: rankcore.topk_batch(users, table, k, threads=t), max(1, args.repeat // 2))
    if faiss is not None:
        faiss.omp_set_num_threads(t)
        rows[f"faiss IndexFlatIP, {n_users} users, {t} threads"] = best(
            lambda: index.search(users_aug, k), max(1, args.repeat // 2))

    print(f"\nN={n} d={d} k={k}  (best of {args.repeat}; wall s, thread CPU s)")
    for name, (wall, cpu) in rows.items():
        print(f"  {name:48s} {wall * 1e3:10.2f} ms  cpu {cpu * 1e3:10.2f} ms")
    one = rows["rankcore topk, 1 user, 1 thread"]
    read = rows["read table (numpy sum, 1 thread)"]
    print(f"\n  topk 1 user / read time:        {one[0] / read[0]:.2f}x (wall)  {one[1] / read[1]:.2f}x (cpu)")
    if faiss is not None:
        f1 = rows["faiss IndexFlatIP, 1 user, 1 thread"]
        fb = rows[f"faiss IndexFlatIP, {n_users} users, {t} threads"]
        rb = rows[f"rankcore topk_batch, {n_users} users, {t} threads"]
        print(f"  faiss / topk, 1 user, 1 thread:  {f1[0] / one[0]:.2f}x (wall)  {f1[1] / one[1]:.2f}x (cpu)")
        print(f"  faiss / topk_batch, {n_users} users:  {fb[0] / rb[0]:.2f}x (wall)")


if __name__ == "__main__":
    main()
