"""What a filter adds to GetPersonalizedRanking, measured interleaved (a plain script).

pytest-benchmark times one row after another, and on a shared machine the unfiltered and the
filtered rows can land minutes apart under different load. Here every loop iteration times the
kernel alone, the unfiltered ``campaign.rank``, an Items-filtered and an Interactions-filtered
``campaign.rank`` back to back, each on a different one of the bench's candidate lists (rotating,
so every variant sees the same mix of warm and cold rows), and the medians over several
repetitions are compared. Same model, filters and requests as ``bench_filters.py``.

    PYTHONPATH=src python benches/filter_overhead.py [--reps 6] [--calls 2000]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rankcore  # noqa: E402
import bench_filters as bf  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    st = bf.setup()
    c, model, arns = st["campaign"], st["model"], st["arns"]
    vecs = [c.user_vector(u) for u in st["users"]]
    table = model.item_table
    fv = bf.FILTERS["items-filter"][1]
    n_lists = len(st["ids"])
    calls = [
        ("kernel-rows", lambda i: rankcore.rank(vecs[i], table, st["rows"][i])),
        ("unfiltered", lambda i: c.rank(st["users"][i], st["ids"][i])),
        ("items-filter", lambda i: c.rank(st["users"][i], st["ids"][i], filter=arns["items-filter"],
                                          filter_values=fv)),
        ("interactions-filter", lambda i: c.rank(st["users"][i], st["ids"][i],
                                                 filter=arns["interactions-filter"])),
    ]
    for _, f in calls:
        f(0)
    per_rep = {name: [] for name, _ in calls}
    clock = time.perf_counter
    for rep in range(args.reps):
        sums = [0.0] * len(calls)
        for j in range(args.calls):
            for k, (_, f) in enumerate(calls):
                i = (j + k * (n_lists // len(calls)) + rep) % n_lists
                t0 = clock()
                f(i)
                sums[k] += clock() - t0
        for k, (name, _) in enumerate(calls):
            per_rep[name].append(sums[k] / args.calls * 1e6)
    med = {name: sorted(v)[len(v) // 2] for name, v in per_rep.items()}
    print(f"N={bf.BENCH_ITEMS} K={bf.K}; median of {args.reps} x {args.calls} interleaved calls")
    for name, v in med.items():
        print(f"  {name:22s} {v:8.1f} us")
    for name in ("items-filter", "interactions-filter"):
        added = med[name] - med["unfiltered"]
        verdict = "below" if added < med["kernel-rows"] else "NOT below"
        print(f"  {name} adds {added:.1f} us: {verdict} the kernel's own {med['kernel-rows']:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
