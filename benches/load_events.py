"""Sustained PutEvents through ``rankcore serve`` while ranking requests run, on loopback.

Starts ``python -m rankcore serve`` with an event store in a temporary directory on a free
127.0.0.1 port, then runs two phases of ``--seconds`` each:

  ranking only      ``--rankers`` keep-alive connections send GetPersonalizedRanking back to back
  ranking + events  the same, plus ``--clients`` (8) connections sending PutEvents of 10 events
                    back to back (each answered once the events are committed to the store)

and prints the events/s sustained, the PutEvents p50/p99 and the ranking requests/s and p99 of
both phases side by side. The target is at least 2,000 events/s. Every response must be 200.
The script stops the server itself; nothing leaves the machine.

    PYTHONPATH=src python benches/load_events.py --seconds 10
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from load_server import free_port, wait_ready

HOST = "127.0.0.1"
ARN = "arn:aws:personalize:us-east-1:000000000000:campaign/bench"


def http_post(path: str, body: bytes, port: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def worker(port: int, make, stop_at: float, lat: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        k = 0
        while time.perf_counter() < stop_at:
            writer.write(make(k))
            k += 1
            t0 = time.perf_counter()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0] + b" " + body[:200])
    finally:
        writer.close()


async def phase(port: int, seconds: float, rankers: int, clients: int, n_users: int, n_items: int,
                items: int, tracking_id: str) -> dict:
    rng = np.random.default_rng(0)
    rank_payloads = [http_post("/personalize-ranking", orjson.dumps({
        "campaignArn": ARN, "userId": str(int(rng.integers(n_users))),
        "inputList": [str(int(i)) for i in rng.choice(n_items, items, replace=False)]}), port)
        for _ in range(256)]

    def event_call(client: int):
        def make(k: int) -> bytes:
            user = f"bench-{client}-{k % 50}"
            events = [{"eventType": "click", "itemId": str((k * 10 + j) % n_items), "sentAt": time.time()}
                      for j in range(10)]
            return http_post("/events", orjson.dumps({"trackingId": tracking_id, "userId": user,
                                                      "sessionId": user, "eventList": events}), port)
        return make

    rank_lat: list = []
    event_lat: list = []
    errors: list = []
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    tasks = [worker(port, lambda k, o=i * 31: rank_payloads[(o + k) % len(rank_payloads)], stop_at,
                    rank_lat, errors) for i in range(rankers)]
    tasks += [worker(port, event_call(c), stop_at, event_lat, errors) for c in range(clients)]
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, first: {errors[0]!r}")
    ms = lambda a, q: float(np.percentile(np.array(a), q) * 1e3) if a else float("nan")  # noqa: E731
    return {"wall": wall, "rank_rps": len(rank_lat) / wall, "rank_p50": ms(rank_lat, 50),
            "rank_p99": ms(rank_lat, 99), "events_per_s": 10 * len(event_lat) / wall,
            "put_p50": ms(event_lat, 50), "put_p99": ms(event_lat, 99)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    p.add_argument("--clients", type=int, default=8, help="PutEvents connections (default 8)")
    p.add_argument("--rankers", type=int, default=2, help="ranking connections (default 2)")
    p.add_argument("--items", type=int, default=100, help="items per ranking request (default 100)")
    p.add_argument("--workers", default="1", help="server worker processes (default 1)")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 600:
        p.error("--seconds must be in (0, 600]")
    src = str(Path(__file__).resolve().parent.parent / "src")
    sys.path.insert(0, src)
    from rankcore.datasets import synthetic  # after the path: the tree's own rankcore

    n_users, n_items = 1000, 10000
    with tempfile.TemporaryDirectory() as tmp:
        synthetic(n_users=n_users, n_items=n_items, dim=64, seed=0).save(os.path.join(tmp, "bench"))
        port = free_port()
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen(
            [sys.executable, "-m", "rankcore", "serve", "--campaign", f"bench={tmp}/bench",
             "--event-store", f"{tmp}/events.db", "--port", str(port), "--no-reload",
             "--workers", args.workers], env=env, stdout=subprocess.PIPE, text=True)
        try:
            out = ""
            while "rankcore serving on" not in out:
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit("server exited")
                out += line
            tracking_id = re.search(r"tracking ID (\S+)", out).group(1)
            wait_ready(port, proc)
            run = lambda clients: asyncio.run(phase(  # noqa: E731
                port, args.seconds, args.rankers, clients, n_users, n_items, args.items, tracking_id))
            run(0)  # warm-up
            alone = run(0)
            mixed = run(args.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"rankcore serve, workers {args.workers}, {args.rankers} ranking connections "
          f"({args.items} items), {args.seconds:g} s per phase, {os.cpu_count()} CPUs")
    print(f"{'phase':<18}{'events/s':>10}{'put p50 ms':>12}{'put p99 ms':>12}{'rank req/s':>12}"
          f"{'rank p50 ms':>13}{'rank p99 ms':>13}")
    for name, r in (("ranking only", alone), (f"+ {args.clients} PutEvents", mixed)):
        print(f"{name:<18}{r['events_per_s']:>10.0f}{r['put_p50']:>12.2f}{r['put_p99']:>12.2f}"
              f"{r['rank_rps']:>12.0f}{r['rank_p50']:>13.2f}{r['rank_p99']:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
