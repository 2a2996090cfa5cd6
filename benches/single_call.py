"""Single-call ranking, interleaved: rankcore backends and the baselines on the same requests.

pytest-benchmark (``bench_score.py``) times one implementation after another; on a shared machine
they can run under different load. Here each loop iteration runs every implementation back to
back, each on a different candidate list of a rotating pool that touches every row of the table
(so rows are cold, as in serving), and the medians over repetitions are compared as ratios.

    PYTHONPATH=src python benches/single_call.py [--n 2000000] [--d 64] [--k 500] [--reps 5]
"""
import argparse
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import rankcore  # noqa: E402
from baselines import faiss, faiss_path, numba_plain, numpy_naive  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--lists", type=int, default=0, help="candidate lists in the pool (default 2N/K)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    table = rankcore.ItemTable(rng.standard_normal((args.n, args.d), dtype=np.float32) / np.sqrt(args.d))
    emb = table.data if table.padded_dim == args.d else np.ascontiguousarray(table.embeddings)
    user = rng.standard_normal(args.d).astype(np.float32)
    n_lists = args.lists or max(64, min(8192, 2 * args.n // args.k))
    pool = rng.integers(0, args.n, (n_lists, args.k))
    impls = [(f"rankcore-{b}", (lambda b: lambda c: rankcore.rank(user, table, c, backend=b))(b))
             for b in rankcore.available_backends() if b != "numpy"]
    impls.append(("numpy-naive", lambda c: numpy_naive(user, emb, c)))
    if faiss is not None:
        impls.append(("faiss+numpy", lambda c: faiss_path(user, emb, c)))
    impls.append(("numba-plain", lambda c: numba_plain(user, emb, c)))
    for _, f in impls:
        f(pool[0])  # compile / warm up
    clock = time.perf_counter
    per_rep = {name: [] for name, _ in impls}
    stride = n_lists // len(impls)
    for rep in range(args.reps):
        sums = [0.0] * len(impls)
        for j in range(n_lists):
            for m, (_, f) in enumerate(impls):
                c = pool[(j + m * stride + rep) % n_lists]
                t0 = clock()
                f(c)
                sums[m] += clock() - t0
        for m, (name, _) in enumerate(impls):
            per_rep[name].append(sums[m] / n_lists * 1e6)
    med = {name: sorted(v)[len(v) // 2] for name, v in per_rep.items()}
    print(f"N={args.n} d={args.d} K={args.k}; {n_lists} rotating lists, median of {args.reps} passes; "
          f"kernel {rankcore.build_info().get('simd_kernel')}")
    for name, v in sorted(med.items(), key=lambda kv: kv[1]):
        ratios = f"{med['numpy-naive'] / v:5.2f}x vs numpy-naive"
        if "faiss+numpy" in med:
            ratios += f", {med['faiss+numpy'] / v:5.2f}x vs faiss+numpy"
        print(f"  {name:16s} {v:8.1f} us   {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
