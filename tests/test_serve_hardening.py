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
