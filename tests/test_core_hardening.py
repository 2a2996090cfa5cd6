"""Hardening of the scoring API (issue 11, items 2 and 13): every backend behaves like ``cpp``.

* A thread that changes the caller's candidate or offset arrays during ``rank_batch`` can only
  cause a clear error or a correct ranking, never a crash or an item outside the table (numba
  used to segfault and NumPy to return item -1). Run in a subprocess, so a crash fails the test.
* ``k >= 2**63`` raises ``ValueError`` on every backend (it raised TypeError, numba's TypingError
  or OverflowError depending on the backend); ``threads`` is clamped to the usable cores.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rankcore
from rankcore.core.api import MAX_THREADS

# the directory the imported rankcore comes from (src/ in development, site-packages when
# installed), so subprocesses run the same build, native extension included
SRC = os.path.dirname(os.path.dirname(os.path.abspath(rankcore.__file__)))


@pytest.mark.parametrize("k", [2**63, 2**64, 10**30])
def test_huge_k_is_value_error_everywhere(backend, rng, k):
    table = rankcore.ItemTable(rng.standard_normal((20, 8)))
    user = rng.standard_normal(8).astype(np.float32)
    with pytest.raises(ValueError, match="k must be"):
        rankcore.rank(user, table, [1, 2, 3], k=k, backend=backend)
    with pytest.raises(ValueError, match="k must be"):
        rankcore.rank_batch(user[None], table, np.array([[1, 2, 3]]), k=k, backend=backend)


def test_largest_k_still_means_everything(backend, rng):
    table = rankcore.ItemTable(rng.standard_normal((20, 8)))
    user = rng.standard_normal(8).astype(np.float32)
    r = rankcore.rank(user, table, [1, 2, 3], k=2**63 - 1, backend=backend)
    assert len(r) == 3


def test_threads_are_clamped(backend, rng):
    table = rankcore.ItemTable(rng.standard_normal((50, 8)))
    users = rng.standard_normal((4, 8)).astype(np.float32)
    cands = rng.integers(0, 50, (4, 10))
    want = rankcore.rank_batch(users, table, cands, backend=backend, threads=1)
    got = rankcore.rank_batch(users, table, cands, backend=backend, threads=2**40)
    np.testing.assert_array_equal(got.items, want.items)
    assert MAX_THREADS >= 1
    assert MAX_THREADS <= (os.cpu_count() or 1)


_MUTATOR = textwrap.dedent("""
    import sys, threading
    import numpy as np
    import rankcore

    backend = sys.argv[1]
    sys.setswitchinterval(1e-6)
    rng = np.random.default_rng(0)
    n = 1000
    table = rankcore.ItemTable(rng.standard_normal((n, 16)))
    B, K = 128, 1000
    users = rng.standard_normal((B, 16)).astype(np.float32)
    good = rng.integers(0, n, B * K)
    bad = np.full(B * K, 10**12, dtype=np.int64)
    cands = good.copy()
    good_offsets = np.arange(B + 1, dtype=np.int64) * K
    bad_offsets = good_offsets.copy()
    bad_offsets[1:-1] = 10**9
    offsets = good_offsets.copy()
    stop = threading.Event()

    def mutate():
        while not stop.is_set():
            cands[:] = bad
            offsets[:] = bad_offsets
            cands[:] = good
            offsets[:] = good_offsets

    t = threading.Thread(target=mutate)
    t.start()
    errors = ok = 0
    try:
        for _ in range(200):
            try:
                res = rankcore.rank_batch(users, table, cands, offsets, backend=backend, threads=2)
            except (IndexError, ValueError):
                errors += 1
                continue
            ok += 1
            assert res.items.min(initial=0) >= 0 and res.items.max(initial=0) < n, "item out of range"
    finally:
        stop.set()
        t.join()
    print("ok", ok, "errors", errors)
""")


def test_concurrent_change_of_inputs_is_safe(backend):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _MUTATOR, backend], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("ok"), proc.stdout
