"""faiss approximate top-K (``rankcore.model.ann.AnnIndex``) against the exact ``topk``, one run.

Catalog: ``rankcore.model.synthetic.synthetic`` (clustered genres, item bias), N =
``RANKCORE_BENCH_ITEMS`` rows (default 2,000,000), d = 64; queries are its user vectors.
Reports, per index kind: build time and index file size; per single-user request (one thread)
the p50/p99 latency of ``search`` and of ``topk`` (rows + normaliser estimate), recall@25 against
the exact top-25, for a sweep of ``efSearch`` (hnsw) or ``nprobe`` (ivf); the relative error of
the scores from the normaliser estimate; the exact ``topk`` (one thread) p50/p99 beside them.
``--crossover 10000,50000,...`` instead measures, per size, the exact p50 and the cheapest hnsw
setting of each kind reaching recall@25 >= 0.95 (search alone, and ``topk`` with the normaliser
estimate, which is what a request pays), and prints where exact is faster.
``--cache DIR`` keeps the model and its index between runs (the build is skipped when present).
Run: ``python benches/ann_vs_exact.py [--kind hnsw,ivf] [--queries 300] [--cache DIR]``.
"""
import argparse
import json
import os
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

import rankcore  # noqa: E402
from rankcore.core import topk  # noqa: E402
from rankcore.errors import ModelFormatError  # noqa: E402
from rankcore.model import load_model  # noqa: E402
from rankcore.model.ann import AnnIndex  # noqa: E402
from rankcore.model.synthetic import synthetic  # noqa: E402

K = 25


def pct(times):
    t = np.asarray(times) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def timed(fn, queries):
    out, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t0)
    return out, times


def model_for(n, n_queries, cache):
    # read into private memory, as ``rankcore serve`` loads models (a mapped table adds page
    # faults to every cold row the search gathers)
    if cache and os.path.exists(os.path.join(cache, "manifest.json")):
        m = load_model(cache, mmap=False)
        if m.n_items == n and m.n_users >= n_queries:
            return m, cache
    m = synthetic(n_users=n_queries, n_items=n, item_bias=True, with_context=False,
                  with_metadata=False, with_history=False)
    path = cache or tempfile.mkdtemp(prefix="ann-bench-")
    m.save(path, checksums=False)
    return load_model(path, mmap=False), path


def index_for(m, path, kind, args):
    try:
        idx = AnnIndex.load(path, m, kind=kind, mmap=False)  # read into memory, as the server does
        print(f"[{kind}] loaded from {path}; build time not measured this run")
        return idx, None
    except ModelFormatError:
        pass
    t0 = time.perf_counter()
    idx = AnnIndex.build(m, kind, m=args.m, ef_construction=args.ef_construction,
                         threads=args.threads, norm_sample=args.norm_sample)
    build = time.perf_counter() - t0
    idx.save(path)
    return idx, build


def exact_results(m, users):
    res, times = timed(lambda u: topk(u, m.item_table, K, threads=1), users)
    return res, times


def report_kind(m, path, kind, users, exact, args):
    idx, build = index_for(m, path, kind, args)
    size = os.path.getsize(os.path.join(path, f"ann.{kind}.faissindex"))
    print(f"\n[{kind}] N={m.n_items} d={m.dim} build {'-' if build is None else f'{build:.1f} s'} "
          f"({args.threads or faiss.omp_get_max_threads()} threads), index file {size / 2**20:.1f} MiB, "
          f"params {idx.params}")
    faiss.omp_set_num_threads(1)
    sweep = [16, 32, 64, 128, 256] if kind == "hnsw" else [8, 16, 24, 32, 48, 64, 128]
    sweep = sorted(set(sweep) | {idx.ef_search if kind == "hnsw" else idx.nprobe})  # + the default
    truth = [set(r.items.tolist()) for r in exact]
    for v in sweep:
        kw = {"ef_search": v} if kind == "hnsw" else {"nprobe": v}
        idx.search(users[0], K, **kw)
        got, times = timed(lambda u: idx.search(u, K, **kw)[0][0], users)
        rec = np.mean([len(t & set(g.tolist())) / K for t, g in zip(truth, got)])
        _, ttimes = timed(lambda u: idx.topk(u, K, **kw), users)
        p50, p99 = pct(times)
        t50, t99 = pct(ttimes)
        print(f"  {list(kw)[0]}={v:4d}  recall@25 {rec:.4f}  search p50 {p50:.3f} ms p99 {p99:.3f} ms"
              f"  | topk (+normaliser) p50 {t50:.3f} ms p99 {t99:.3f} ms")
    errs = []
    for u, ex in zip(users, exact):
        r = idx.topk(u, K)
        errs.append(abs(np.expm1(ex.log_normalizer - r.log_normalizer)))
    e = np.asarray(errs)
    print(f"  normaliser estimate (sample {idx.params['norm_sample']}): relative score error "
          f"mean {e.mean():.4f} p50 {np.median(e):.4f} p99 {np.percentile(e, 99):.4f} max {e.max():.4f}")


def cheapest(idx, kind, users, truth):
    """(setting, recall, search p50 ms, topk p50 ms) of the cheapest setting with recall >= 0.95."""
    name = "ef_search" if kind == "hnsw" else "nprobe"
    for v in (8, 16, 32, 64, 128, 256, 512):
        kw = {name: v}
        got, times = timed(lambda u: idx.search(u, K, **kw)[0][0], users)
        rec = np.mean([len(t & set(g.tolist())) / K for t, g in zip(truth, got)])
        if rec >= 0.95:
            _, ttimes = timed(lambda u: idx.topk(u, K, **kw), users)
            return f"{name}={v}", rec, pct(times)[0], pct(ttimes)[0]
    return None


def crossover(sizes, args):
    kinds = args.kind.split(",")
    print(f"\ncrossover (one thread, single request; per kind the cheapest setting with recall@25 "
          f">= 0.95; 'topk' adds the normaliser estimate): kinds {kinds}")
    faster_exact = []
    for n in sizes:
        m = synthetic(n_users=args.queries, n_items=n, item_bias=True, with_context=False,
                      with_metadata=False, with_history=False)
        users = m.user_embeddings
        exact, etimes = exact_results(m, users)
        truth = [set(r.items.tolist()) for r in exact]
        e50 = pct(etimes)[0]
        line = f"  N={n:8d}  exact p50 {e50:.3f} ms"
        best_faiss = np.inf
        for kind in kinds:
            t0 = time.perf_counter()
            idx = AnnIndex.build(m, kind, m=args.m, ef_construction=args.ef_construction,
                                 threads=args.threads)
            build = time.perf_counter() - t0
            faiss.omp_set_num_threads(1)
            best = cheapest(idx, kind, users, truth)
            faiss.omp_set_num_threads(args.threads or os.cpu_count())
            line += f" | {kind} build {build:.1f} s "
            if best is None:
                line += "recall@25 < 0.95 at every setting"
            else:
                line += f"{best[0]} recall {best[1]:.3f} search p50 {best[2]:.3f} ms topk p50 {best[3]:.3f} ms"
                best_faiss = min(best_faiss, best[3])
        if e50 <= best_faiss:
            faster_exact.append(n)
        print(line, flush=True)
    bigger = [n for n in sizes if n not in faster_exact]
    print(f"  exact (with its exact normaliser) is faster at {faster_exact}; faiss at {bigger}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="hnsw,ivf")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--exact-queries", type=int, default=100)
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--norm-sample", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="build threads (default: all)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--crossover", default=None, help="comma-separated catalog sizes")
    args = ap.parse_args()
    print(json.dumps(rankcore.build_info(), default=str))
    if args.crossover:
        crossover([int(s) for s in args.crossover.split(",")], args)
        return
    n = int(os.environ.get("RANKCORE_BENCH_ITEMS", "2000000"))
    t0 = time.perf_counter()
    m, path = model_for(n, args.queries, args.cache)
    print(f"model N={m.n_items} ready in {time.perf_counter() - t0:.1f} s at {path}", flush=True)
    users = np.asarray(m.user_embeddings[:args.queries])
    exact, etimes = exact_results(m, users)
    p50, p99 = pct(etimes[:args.exact_queries])
    print(f"[exact] topk one thread: p50 {p50:.3f} ms p99 {p99:.3f} ms", flush=True)
    for kind in args.kind.split(","):
        report_kind(m, path, kind, users, exact, args)


if __name__ == "__main__":
    main()
