"""``rankcore serve`` against a hostile world: files changed under it, odd manifests, oversized or
slow requests, bad signatures and malformed HTTP. Servers run as subprocesses on 127.0.0.1 (a
crash must show as a dead process, not take the test run with it); every wait is bounded.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rankcore.datasets import synthetic
from test_server import ARN, SIZES, _env, _free_port, run_server


def _wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _metric(url: str, line: str) -> bool:
    return line in httpx.get(url + "/metrics").text


REQ = dict(campaignArn=ARN, userId="3", inputList=[str(i) for i in range(0, 2000, 41)])


# --------------------------------------------------------------------------- item 1
def test_files_truncated_or_overwritten_in_place_under_the_server(tmp_path):
    live = tmp_path / "live"
    synthetic(**SIZES, seed=1).save(live)
    with run_server("--campaign", f"demo={live}", "--reload-interval", "0.1") as proc:
        url = proc.url + "/personalize-ranking"
        before = httpx.post(url, json=REQ).json()["personalizedRanking"]
        with open(live / "item_embeddings.npy", "r+b") as f:  # truncate -s 4096
            f.truncate(4096)
        with open(live / "user_embeddings.npy", "r+b") as f:
            f.truncate(0)
        r = httpx.post(url, json=REQ)
        assert proc.poll() is None, "the server died"
        assert r.status_code == 200 and r.json()["personalizedRanking"] == before
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_reload_failures_total{campaign="demo"} 1'),
                  "the broken files were not noticed")
        assert httpx.post(url, json=REQ).json()["personalizedRanking"] == before
        # cp -r new/. live/: an in-place overwrite of every file, picked up as a whole
        new = tmp_path / "new"
        synthetic(**SIZES, seed=2).save(new)
        shutil.copytree(new, live, dirs_exist_ok=True)
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_generation{campaign="demo"} 2'),
                  "the copied model was not loaded")
        after = httpx.post(url, json=REQ).json()["personalizedRanking"]
        assert after != before and proc.poll() is None


# --------------------------------------------------------------------------- item 9
def test_manifest_fifo_on_a_live_server_is_a_counted_failure(tmp_path):
    live = tmp_path / "live"
    synthetic(**SIZES, seed=1).save(live)
    with run_server("--campaign", f"demo={live}", "--reload-interval", "0.1") as proc:
        url = proc.url + "/personalize-ranking"
        before = httpx.post(url, json=REQ).json()["personalizedRanking"]
        os.remove(live / "manifest.json")
        os.mkfifo(live / "manifest.json")
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_reload_failures_total{campaign="demo"} 1'),
                  "the FIFO reload was not counted as failed")
        assert httpx.post(url, json=REQ).json()["personalizedRanking"] == before
        os.remove(live / "manifest.json")
        os.symlink("/dev/zero", live / "manifest.json")
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_reload_failures_total{campaign="demo"} 2'),
                  "the /dev/zero reload was not counted as failed")
        # later changes still work
        shutil.rmtree(live)
        synthetic(**SIZES, seed=2).save(live)
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_generation{campaign="demo"} 2'),
                  "a good model after the failures was not loaded")
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: _metric(proc.url, 'rankcore_model_generation{campaign="demo"} 3'),
                  "SIGHUP after the failures did not reload")


def test_reload_that_hangs_times_out_and_later_reloads_work(tmp_path):
    import threading

    from rankcore.model import load_model
    from rankcore.serve import CampaignRegistry, CampaignSpec

    live = tmp_path / "live"
    synthetic(**SIZES, seed=1).save(live)
    release = threading.Event()
    calls = []

    def loader(path):
        calls.append(path)
        if len(calls) == 2:  # the first reload hangs (a file system that stopped answering)
            release.wait(30)
        return load_model(path, mmap=False)

    registry = CampaignRegistry([CampaignSpec("demo", str(live))], loader=loader, reload_timeout=0.5)
    seen = []
    registry.listeners.append(lambda name, ok, gen: seen.append((name, ok, gen)))
    assert registry.reload("demo") is False
    assert registry.reload_failures["demo"] == 1 and seen == [("demo", False, 1)]
    assert registry.reload("demo") is True and registry.generations["demo"] == 2
    release.set()


# --------------------------------------------------------------------------- items 6, 7, 12 (wire)
@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    d = tmp_path_factory.mktemp("guarded") / "demo"
    synthetic(**SIZES, seed=0).save(d)
    with run_server("--campaign", f"demo={d}", "--no-reload", "--max-body-bytes", "100000",
                    "--max-header-bytes", "8192", "--idle-timeout", "1", "--header-timeout", "1",
                    "--body-timeout", "1", "--max-connections", "20") as proc:
        proc.port = int(proc.url.rsplit(":", 1)[1])
        yield proc


def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        if data:
            s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return out
            if not chunk:
                return out
            out += chunk


def _assert_service_error(raw: bytes, status: int, error: str) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status}"), lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["x-amzn-errortype"] == error and headers["x-amzn-requestid"]
    assert json.loads(body)["__type"] == error


def test_oversized_body_is_413_before_it_is_read(guarded):
    head = (b"POST /personalize-ranking HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 500000000\r\n\r\n")
    raw = _raw(guarded.port, head + b"{" * 1000)  # the 500 MB never come
    _assert_service_error(raw, 413, "InvalidInputException")


def test_oversized_chunked_body_is_413(guarded):
    def chunks():
        for _ in range(20):
            yield b"x" * 10_000
    r = httpx.post(guarded.url + "/personalize-ranking", content=chunks())
    assert r.status_code == 413 and r.headers["x-amzn-ErrorType"] == "InvalidInputException"
    assert r.headers["x-amzn-RequestId"]


def test_oversized_headers_are_431(guarded):
    raw = _raw(guarded.port, b"GET /ping HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 200_000 + b"\r\n\r\n")
    _assert_service_error(raw, 431, "RequestHeaderFieldsTooLargeException")
    assert httpx.get(guarded.url + "/ping").status_code == 200


def test_malformed_http_gets_the_service_error_shape(guarded):
    _assert_service_error(_raw(guarded.port, b"NOT HTTP AT ALL\r\n\r\n"), 400, "InvalidInputException")


def test_silent_and_trickling_connections_are_closed(guarded):
    t0 = time.monotonic()
    assert _raw(guarded.port, b"", wait=20) == b""  # silent: closed after the idle timeout
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=20) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\n")
        got = b""
        for _ in range(40):  # one header byte every 0.1 s: never completes
            try:
                s.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        try:
            got = s.recv(65536)
        except OSError:
            pass
    assert time.monotonic() - t0 < 19  # the server, not the test's own timeout, ended both
    assert got.startswith(b"HTTP/1.1 408")


def test_connection_cap(guarded):
    socks = [socket.create_connection(("127.0.0.1", guarded.port), timeout=5) for _ in range(25)]
    try:
        refused = 0
        for s in socks[20:]:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            refused += data.startswith(b"HTTP/1.1 503")
        assert refused == 5
    finally:
        for s in socks:
            s.close()
    assert httpx.get(guarded.url + "/ping").status_code == 200


@pytest.mark.parametrize("method, path", [("POST", "/personalize-ranking/"), ("GET", "/personalize-ranking"),
                                          ("PUT", "/ping"), ("POST", "/recommendations/")])
def test_wrong_method_or_trailing_slash_is_404_with_request_id(guarded, method, path):
    r = httpx.request(method, guarded.url + path, json={})
    assert r.status_code == 404, (r.status_code, r.headers)
    assert r.headers["x-amzn-ErrorType"] == "UnknownOperationException" and r.headers["x-amzn-RequestId"]


def test_bad_values_are_not_echoed_whole(guarded):
    body = {"campaignArn": ARN, "userId": "1", "inputList": "x" * 90_000}
    r = httpx.post(guarded.url + "/personalize-ranking", json=body)
    assert r.status_code == 400 and len(r.content) < 2000


# --------------------------------------------------------------------------- item 11 (SigV4)
def _signed(url: str, body: bytes, region: str, unsigned: bool = False) -> httpx.Response:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"content-type": "application/json"}
    if unsigned:
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    req = AWSRequest(method="POST", url=url + "/personalize-ranking", data=body, headers=headers)
    SigV4Auth(Credentials("AKID", "secret"), "personalize", region).add_auth(req)
    return httpx.post(url + "/personalize-ranking", content=body, headers=dict(req.headers))


def test_sigv4_region_and_unsigned_payload(tmp_path):
    pytest.importorskip("botocore")
    d = tmp_path / "demo"
    synthetic(**SIZES, seed=0).save(d)
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"AKID": "secret"}))
    body = json.dumps(dict(campaignArn=ARN, userId="1", inputList=["1", "2"])).encode()
    args = ("--campaign", f"demo={d}", "--no-reload", "--auth", "sigv4", "--credentials", str(creds))
    with run_server(*args) as proc:
        assert _signed(proc.url, body, "us-east-1").status_code == 200
        r = _signed(proc.url, body, "eu-west-1")
        assert r.status_code == 403 and "region 'us-east-1'" in r.json()["message"]
        r = _signed(proc.url, body, "us-east-1", unsigned=True)
        assert r.status_code == 403 and "UNSIGNED-PAYLOAD" in r.json()["message"]
    with run_server(*args, "--allow-unsigned-payload") as proc:
        assert _signed(proc.url, body, "us-east-1", unsigned=True).status_code == 200


# --------------------------------------------------------------------------- item 18
def test_port_in_use_is_one_clear_error(tmp_path):
    d = tmp_path / "demo"
    synthetic(n_users=5, n_items=10, dim=4, seed=0).save(d)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "rankcore", "serve", "--campaign", f"demo={d}",
                            "--port", str(port)], env=_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "serving on" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], p.stderr


# --------------------------------------------------------------------------- item 22
def _start(*args):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rankcore", "serve", "--host", "127.0.0.1",
                             "--port", str(port), *args], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_for(lambda: proc.poll() is not None or _ping(url), "server did not start", 60)
    assert proc.poll() is None, proc.communicate()
    return proc, url


def _ping(url):
    try:
        return httpx.get(url + "/ping", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_two_workers_metrics_sighup_and_ctrl_c(tmp_path):
    d = tmp_path / "demo"
    synthetic(**SIZES, seed=0).save(d)
    proc, url = _start("--campaign", f"demo={d}", "--workers", "2", "--no-reload")
    try:
        n = 30
        for _ in range(n):  # fresh connections: the kernel spreads them over both workers
            assert httpx.post(url + "/personalize-ranking", json=REQ).status_code == 200
        line = 'rankcore_requests_total{operation="GetPersonalizedRanking",status="200"} '
        for _ in range(6):  # every scrape, whichever worker answers it, counts all requests
            text = httpx.get(url + "/metrics").text
            assert f"{line}{float(n)}" in text, text
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: _ping(url), "no answer after SIGHUP")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "SIGHUP: restarting the 2 workers" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too: they hold the output pipes
            proc.communicate(timeout=30)


def test_banner_names_backend_and_kernel_and_ctrl_c_is_130(tmp_path):
    import rankcore

    d = tmp_path / "demo"
    synthetic(n_users=5, n_items=10, dim=4, seed=0).save(d)
    proc, url = _start("--campaign", f"demo={d}", "--no-reload")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    banner = [line for line in out.splitlines() if "serving on" in line][0]
    info = rankcore.build_info()
    assert f"backend {info['default_backend']}" in banner
    if info["default_backend"] == "cpp":
        assert f"{info['simd_kernel']} kernel" in banner
