"""faiss HNSW alone on the synthetic catalog: build time, then recall@25 and latency per efSearch.

The catalog is ``rankcore.model.synthetic.synthetic`` (clustered genres, item bias; as in
``benches/ann_vs_exact.py``), N rows, d = 64; 300 user vectors as queries; the truth is the exact
``rankcore.topk_batch``. Index kinds (``--kinds``, comma-separated):

- ``flat``: ``IndexHNSWFlat`` with inner product on the augmented rows ``[e, b]`` (query ``[u, 1]``),
  what ``rankcore.model.ann`` builds;
- ``l2``: the MIPS-to-L2 transform, rows ``[e, b, sqrt(M^2 - |[e, b]|^2)]`` with M the largest
  norm, query ``[u, 1, 0]``, L2 ``IndexHNSWFlat``;
- ``sq8``: ``IndexHNSWSQ`` (8-bit scalar quantiser, inner product), 50 rows searched and rescored
  exactly in float32.

Builds use every core (OpenMP); searches one thread, one query at a time (faiss alone: no
normaliser, no Python of ``AnnIndex``). ``m`` = 32, ``ef_construction`` = 100 unless given.
Run: ``python benches/hnsw_sweep.py [--n 2000000] [--kinds flat,l2,sq8]``.
"""
import argparse
import json
import os
import time

import faiss
import numpy as np

import rankcore
from rankcore.model.synthetic import synthetic

K = 25


def sweep(name, index, data, queries, truth, rescore, efs):
    t0 = time.perf_counter()
    if not index.is_trained:
        index.train(data)
    index.add(data)
    print(f"{name}: build {time.perf_counter() - t0:.1f} s", flush=True)
    faiss.omp_set_num_threads(1)
    for ef in efs:
        index.hnsw.efSearch = ef
        times, recall = [], []
        for i in range(len(queries)):
            t = time.perf_counter()
            _, rows = index.search(queries[i:i + 1], K * rescore)
            if rescore > 1:
                r = rows[0][rows[0] >= 0]
                rows = r[np.argsort(-(data[r] @ queries[i]))[:K]][None]
            times.append(time.perf_counter() - t)
            recall.append(len(set(rows[0]) & set(truth[i])) / K)
        t = np.asarray(times) * 1e3
        print(f"{name}: ef_search={ef} recall@25={np.mean(recall):.3f} p50={np.median(t):.3f} ms "
              f"p99={np.percentile(t, 99):.3f} ms", flush=True)
    faiss.omp_set_num_threads(os.cpu_count() or 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=int(os.environ.get("RANKCORE_BENCH_ITEMS", 2_000_000)))
    ap.add_argument("--kinds", default="flat")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", default="64,128,192,256,384,512")
    args = ap.parse_args()
    print(json.dumps(rankcore.build_info(), default=str))
    model = synthetic(n_users=300, n_items=args.n, item_bias=True, with_context=False,
                      with_metadata=False, with_history=False)
    emb = np.ascontiguousarray(model.item_table.embeddings, dtype=np.float32)
    d = emb.shape[1]
    users = np.ascontiguousarray(model.user_embeddings[:300], dtype=np.float32)
    truth = rankcore.topk_batch(users, model.item_table, K).items
    aug = np.hstack([emb, model.item_table.bias[:, None]]).astype(np.float32)
    del emb
    q = np.hstack([users, np.ones((len(users), 1), np.float32)])
    efs = [int(x) for x in args.ef.split(",")]
    for kind in args.kinds.split(","):
        if kind == "flat":
            index = faiss.IndexHNSWFlat(d + 1, args.m, faiss.METRIC_INNER_PRODUCT)
            data, queries, rescore = aug, q, 1
        elif kind == "l2":
            norms = (aug.astype(np.float64) ** 2).sum(1)
            data = np.hstack([aug, np.sqrt(norms.max() - norms)[:, None].astype(np.float32)])
            queries = np.hstack([q, np.zeros((len(q), 1), np.float32)])
            index, rescore = faiss.IndexHNSWFlat(d + 2, args.m), 1
        elif kind == "sq8":
            index = faiss.IndexHNSWSQ(d + 1, faiss.ScalarQuantizer.QT_8bit, args.m, faiss.METRIC_INNER_PRODUCT)
            data, queries, rescore = aug, q, 2
        else:
            raise SystemExit(f"unknown kind {kind!r} (flat, l2, sq8)")
        index.hnsw.efConstruction = args.ef_construction
        sweep(f"{kind} m={args.m} efc={args.ef_construction} n={args.n}", index, data, queries, truth, rescore, efs)
        del index


if __name__ == "__main__":
    main()
