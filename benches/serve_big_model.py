"""Open and serve a big model: open time and RSS in-process (memory-mapped) and under ``rankcore serve``.

Made for the 20M x 64 int8 model of docs/performance.md::

    rankcore demo big --items 20000000 --users 100000 --item-bias --dtype int8
    python benches/serve_big_model.py big [--port 8931]

Prints ``rankcore.build_info()``, then: import time, ``load_model`` + ``Campaign`` time, a first
500-item ranking, an exact top-25 over the whole catalog and the process RSS; then starts
``rankcore serve`` on the model and reports the time until ``/ping`` answers, the server's RSS and
boto3 ``get_personalized_ranking`` (500 random items, 20 calls) and ``get_recommendations`` (top 25,
5 calls) medians. Needs boto3 (the ``test`` extra).
"""
import argparse
import json
import subprocess
import sys
import textwrap
import time
import urllib.request

import numpy as np

import rankcore


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="model directory")
    ap.add_argument("--port", type=int, default=8931)
    cli = ap.parse_args()
    path = cli.path
    print(json.dumps(rankcore.build_info(), default=str))
    # in-process open (memory-mapped)
    code = f"""
    import time, os
    t0 = time.perf_counter()
    import rankcore
    from rankcore.model import load_model
    from rankcore.personalize import Campaign
    t1 = time.perf_counter()
    m = load_model({path!r})
    c = Campaign(m)
    t2 = time.perf_counter()
    user, items = m.user_ids[0], [m.item_ids[i] for i in range(0, m.n_items, max(1, m.n_items // 500))][:500]
    t2b = time.perf_counter()
    r = c.rank(user, items)
    t3 = time.perf_counter()
    rec = c.recommend(user, k=25)
    t4 = time.perf_counter()
    rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]
    print(f'import {{t1-t0:.2f}} s, load_model(mmap)+Campaign {{t2-t1:.3f}} s, first rank (500 items) {{(t3-t2b)*1e3:.1f}} ms (taking the IDs {{t2b-t2:.2f}} s), recommend top-25 exact {{(t4-t3)*1e3:.0f}} ms, RSS {{int(rss)/1024:.0f}} MiB, table dtype {{m.item_table.dtype}}')
    """
    print("in-process:", subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True).stdout.strip() or "failed")
    port = cli.port
    t0 = time.perf_counter()
    srv = subprocess.Popen(["rankcore", "serve", "--campaign", f"big={path}", "--port", str(port), "--no-reload"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read(); break
        except Exception:
            if srv.poll() is not None:
                print(srv.stdout.read()); raise SystemExit(1)
            time.sleep(0.1)
    ready = time.perf_counter() - t0
    import boto3
    rt = boto3.client("personalize-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    arn = "arn:aws:personalize:us-east-1:000000000000:campaign/big"
    n_items = int(json.load(open(f"{path}/manifest.json"))["n_items"])
    items = [str(i) for i in np.random.default_rng(0).integers(0, n_items, 500)]
    lat_r, lat_g = [], []
    for i in range(20):
        t = time.perf_counter(); out = rt.get_personalized_ranking(campaignArn=arn, userId=str(i), inputList=items); lat_r.append(time.perf_counter() - t)
    for i in range(5):
        t = time.perf_counter(); rec = rt.get_recommendations(campaignArn=arn, userId=str(i), numResults=25); lat_g.append(time.perf_counter() - t)
    print(f"rankcore serve: ready after {ready:.1f} s, server RSS {rss_mb(srv.pid):.0f} MiB; "
          f"boto3 get_personalized_ranking (500 items) p50 {np.median(lat_r)*1e3:.1f} ms, "
          f"get_recommendations (top 25 of the catalog, exact) p50 {np.median(lat_g)*1e3:.0f} ms; "
          f"first item {out['personalizedRanking'][0]}, first rec {rec['itemList'][0]}")
    srv.terminate(); srv.wait()


if __name__ == "__main__":
    main()
