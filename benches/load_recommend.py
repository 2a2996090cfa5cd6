"""GetRecommendations through unmodified boto3 on loopback, beside GetPersonalizedRanking.

Starts ``python -m rankcore serve`` on a free 127.0.0.1 port with a synthetic model (``--items``
x ``--dim``, a genre filter), then for each concurrency level sends exactly ``--requests`` calls of
each kind through boto3 clients (one per thread, keep-alive): ``get_personalized_ranking`` of
``--rank-items`` candidates, ``get_recommendations`` of ``--num-results`` items (catalog-wide
top-K), and ``get_recommendations`` with the filter and a promotion. Prints requests/s and p50/p99
latency per kind. boto3's own client cost (signing, parsing) is part of every figure; the client
and the server share the machine's cores. The script stops by itself; nothing leaves the machine.

    PYTHONPATH=src python benches/load_recommend.py --requests 2000 --concurrency 1 4
    PYTHONPATH=src python benches/load_recommend.py --items 2000000 --index --requests 1000
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
REGION = "us-east-1"
ARN = f"arn:aws:personalize:{REGION}:000000000000:campaign/bench"
FILTER_ARN = f"arn:aws:personalize:{REGION}:000000000000:filter/genre"
FILTER_EXPR = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_calls(kind: str, n_users: int, n_items: int, args, count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        user = str(int(rng.integers(n_users)))
        if kind == "ranking":
            cand = rng.choice(n_items, size=args.rank_items, replace=False)
            out.append(dict(campaignArn=ARN, userId=user, inputList=[str(int(i)) for i in cand]))
        elif kind == "recommendations":
            out.append(dict(campaignArn=ARN, userId=user, numResults=args.num_results))
        else:
            out.append(dict(campaignArn=ARN, userId=user, numResults=args.num_results,
                            filterArn=FILTER_ARN, filterValues={"GENRE": '"Drama","Comedy"'},
                            promotions=[{"name": "horror", "percentPromotedItems": 20,
                                         "filterArn": FILTER_ARN,
                                         "filterValues": {"GENRE": '"Horror"'}}]))
    return out


def run_level(url: str, kind: str, calls: list, concurrency: int) -> dict:
    import boto3  # the bench's client, as a user would call the service
    from botocore.config import Config

    cfg = Config(retries={"max_attempts": 1}, max_pool_connections=concurrency)
    clients = [boto3.client("personalize-runtime", endpoint_url=url, region_name=REGION,
                            aws_access_key_id="x", aws_secret_access_key="x", config=cfg)
               for _ in range(concurrency)]
    method = "get_personalized_ranking" if kind == "ranking" else "get_recommendations"
    for c in clients:  # warm: connection, botocore's model loading
        getattr(c, method)(**calls[0])
    lat: list = [[] for _ in range(concurrency)]
    per = len(calls) // concurrency

    def work(t: int) -> None:
        call = getattr(clients[t], method)
        for k in range(per):
            t0 = time.perf_counter()
            call(**calls[t * per + k])
            lat[t].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(concurrency)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    all_lat = np.concatenate([np.array(x) for x in lat]) * 1e3
    return {"req_s": all_lat.size / wall, "p50": float(np.percentile(all_lat, 50)),
            "p99": float(np.percentile(all_lat, 99)), "n": int(all_lat.size)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--items", type=int, default=10000, help="catalog size")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--rank-items", type=int, default=100, help="inputList length of the ranking call")
    p.add_argument("--num-results", type=int, default=25)
    p.add_argument("--index", action="store_true",
                   help="build the faiss index (rankcore index, its defaults) before serving: "
                        "catalogs of EXACT_BELOW items or more are then served by faiss")
    args = p.parse_args()
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "bench")
        subprocess.run([sys.executable, "-m", "rankcore", "demo", model_dir, "--items", str(args.items),
                        "--users", str(args.users), "--dim", str(args.dim)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        if args.index:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rankcore", "index", model_dir], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            print(f"rankcore index: {time.perf_counter() - t0:.1f} s")
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = subprocess.Popen([sys.executable, "-m", "rankcore", "serve", "--host", HOST, "--port",
                                   str(port), "--campaign", f"bench={model_dir}", "--filter",
                                   f"genre={FILTER_EXPR}"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(url + "/ping", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("server did not start") from None
                    time.sleep(0.1)
            print(f"catalog {args.items} x {args.dim}{' (faiss index)' if args.index else ''}, ranking of {args.rank_items} items, "
                  f"recommendations of {args.num_results}; {args.requests} calls per row; "
                  f"{os.cpu_count()} cores")
            print(f"{'call':<28}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
            for conc in args.concurrency:
                for kind in ("ranking", "recommendations", "recommendations+filter+promo"):
                    calls = make_calls(kind, args.users, args.items, args, args.requests)
                    r = run_level(url, kind, calls, conc)
                    print(f"{kind:<28}{conc:>5}{r['req_s']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
