"""Bounded load test of ``rankcore serve`` on loopback: requests/s and latency percentiles.

Starts ``python -m rankcore serve`` on a free 127.0.0.1 port (or uses ``--url``, which must be a
127.0.0.1 address), then for each concurrency level sends exactly ``--requests`` GetPersonalizedRanking
requests of ``--items`` items over keep-alive connections (one asyncio client per connection, raw
HTTP/1.1, so the client costs little CPU), checks every status is 200, and prints a table. The
in-process ``Client.get_personalized_ranking`` on the same requests is timed for comparison.
``srv us/req`` is the CPU time (user + system) of the server process and its workers per request,
``gen us/req`` that of this load generator: on a small machine they share the cores, so req/s is
bounded by about ``cores / (srv + gen)``. The script stops by itself; nothing leaves the machine.

    PYTHONPATH=src python benches/load_server.py --requests 4000 --concurrency 1 8
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
import orjson

HOST = "127.0.0.1"
ARN = "arn:aws:personalize:us-east-1:000000000000:campaign/bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_requests(n_users: int, n_items: int, items: int, count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        cand = rng.choice(n_items, size=items, replace=False)
        out.append({"campaignArn": ARN, "userId": str(int(rng.integers(n_users))),
                    "inputList": [str(int(i)) for i in cand]})
    return out


def http_request(body: bytes, port: int) -> bytes:
    return (f"POST /personalize-ranking HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def connection(port: int, payloads: list, start: int, n: int, lat: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for k in range(n):
            t0 = time.perf_counter()
            writer.write(payloads[(start + k) % len(payloads)])
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


async def load(port: int, payloads: list, total: int, concurrency: int) -> tuple:
    lat: list = []
    errors: list = []
    per = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(port, payloads, i * 7919, n, lat, errors)
                           for i, n in enumerate(per)))
    return time.perf_counter() - t0, np.array(lat), errors


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of process ``pid`` and its live descendants (Linux /proc)."""
    if pid is None or not os.path.isdir("/proc"):
        return None
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    children: dict = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0))[1]
        todo += children.get(p, [])
    return total / _TICK


def wait_ready(port: int, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(f"GET /ping HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not start")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=4000, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--items", type=int, default=500, help="items per request (default 500)")
    p.add_argument("--model", help="model directory (default: a synthetic 1000 x 10000, d=64 model)")
    p.add_argument("--url", help="an already running server, http://127.0.0.1:PORT (campaign 'bench')")
    p.add_argument("--workers", default="1", help="server worker processes: N or auto (default 1)")
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args(argv)
    if args.requests < 1 or args.requests > 1_000_000:
        p.error("--requests must be 1..1000000")

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import rankcore
    from rankcore import Campaign, Client
    from rankcore.datasets import synthetic
    from rankcore.model import load_model

    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model
    if model_dir is None:
        model_dir = os.path.join(tmp.name, "model")
        synthetic(n_users=1000, n_items=10000, dim=64, seed=0).save(model_dir)
    model = load_model(model_dir)
    requests = make_requests(model.n_users, model.n_items, args.items, 256)
    proc = None
    if args.url:
        u = urllib.parse.urlsplit(args.url)
        if u.hostname != HOST:
            p.error("--url must be on 127.0.0.1")
        port = u.port
    else:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(rankcore.__file__)))
        proc = subprocess.Popen([sys.executable, "-m", "rankcore", "serve", "--campaign",
                                 f"bench={model_dir}", "--host", HOST, "--port", str(port),
                                 "--workers", str(args.workers), "--no-reload"],
                                env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        # in-process reference: the same call the server makes
        client = Client([Campaign(model, name="bench")])
        for r in requests[:50]:
            client.get_personalized_ranking(**r)
        n_local = min(args.requests, 2000)
        local = np.empty(n_local)
        for k in range(n_local):
            t0 = time.perf_counter()
            client.get_personalized_ranking(**requests[k % len(requests)])
            local[k] = time.perf_counter() - t0
        payloads = [http_request(orjson.dumps(r), port) for r in requests]
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(load(port, payloads, args.warmup, 4))
        print(f"rankcore {rankcore.__version__}, backend {rankcore.build_info()['default_backend']}, "
              f"{os.cpu_count()} CPUs, {args.items} items per request, server workers {args.workers}")
        print(f"{'clients':>8} {'requests':>9} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
              f" {'srv us/req':>10} {'gen us/req':>10}")
        print(f"{'in-proc':>8} {n_local:>9} {0:>7} {n_local / local.sum():>9.0f} "
              f"{np.percentile(local, 50) * 1e3:>8.3f} {np.percentile(local, 99) * 1e3:>8.3f}"
              f" {np.median(local) * 1e6:>10.0f} {'-':>10}")
        failed = 0
        server_pid = proc.pid if proc is not None else None
        for c in args.concurrency:
            s0, g0 = tree_cpu(server_pid), time.process_time()
            elapsed, lat, errors = asyncio.run(load(port, payloads, args.requests, c))
            s1, g1 = tree_cpu(server_pid), time.process_time()
            failed += len(errors)
            srv = f"{(s1 - s0) / len(lat) * 1e6:>10.0f}" if s0 is not None and lat.size else f"{'-':>10}"
            print(f"{c:>8} {len(lat):>9} {len(errors):>7} {len(lat) / elapsed:>9.0f} "
                  f"{np.percentile(lat, 50) * 1e3:>8.3f} {np.percentile(lat, 99) * 1e3:>8.3f}"
                  f" {srv} {(g1 - g0) / max(len(lat), 1) * 1e6:>10.0f}")
            for e in errors[:3]:
                print("   ", e.decode(errors="replace"))
        return 1 if failed else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
