"""Print benchmark ratios from a pytest-benchmark JSON file.

Usage: ``python benches/report.py bench.json [--baseline NAME ...]``. For each group, every
row's median time and its speed-up over the group's baseline row (and, where a row records
``items_per_call``, items per second).
"""
import argparse
import json
from collections import defaultdict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("json_file")
    ap.add_argument("--baseline", action="append",
                    help="row name to compare with; the first one present in a group is used "
                         "(default: numpy-naive, baseline-response, baseline, python-dict, "
                         "plain-python, kernel-rows)")
    args = ap.parse_args(argv)
    names = args.baseline or ["numpy-naive", "baseline-response", "baseline", "python-dict",
                              "plain-python", "kernel-rows"]
    with open(args.json_file) as fh:
        data = json.load(fh)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    for group in sorted(groups):
        rows = groups[group]
        by_impl = {r["extra_info"].get("impl"): r for r in rows}
        base_name = next((n for n in names if n in by_impl), None)
        base = by_impl.get(base_name)
        print(f"\n{group}")
        for r in sorted(rows, key=lambda r: r["stats"]["median"]):
            med = r["stats"]["median"]
            impl = r["extra_info"].get("impl", r["name"])
            ratio = f"{base['stats']['median'] / med:6.2f}x" if base else "   n/a"
            items = r["extra_info"].get("items_per_call")
            rate = f"  {items / med / 1e6:8.2f} M items/s" if items else ""
            print(f"  {impl:28s} {med * 1e6:12.1f} us  {ratio} vs {base_name}{rate}")


if __name__ == "__main__":
    main()
