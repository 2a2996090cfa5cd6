#!/usr/bin/env bash
# Sanitizer check for the C++ core (AddressSanitizer + UndefinedBehaviorSanitizer).
#
#   (a) builds cpp/tests/test_native.cpp (headers only, no Python) with
#       -fsanitize=address,undefined and full leak detection, and runs it once per
#       forced kernel;
#   (b) builds the extension with RANKCORE_SANITIZE=1 into a temporary directory (the
#       normal in-place build is left alone) and runs tests/test_kernels.py, tests/test_response.py,
#       tests/test_core.py, tests/test_topk.py and tests/test_compressed.py (their numba cases left out: JIT code is not
#       instrumented) against it with libasan (and libstdc++) preloaded; leak detection
#       is off there because CPython is not leak-clean.
# Any ASAN/UBSAN report fails the script. Usage: PYTHON=python3 .ci/sanitize.sh
set -euo pipefail

PYTHON="${PYTHON:-python}"
CXX="${CXX:-g++}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'if [ -n "${build_pid:-}" ]; then kill "$build_pid" 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT
SAN_FLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g)
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

fail_on_reports() {  # $1: log file
    if grep -E "runtime error:|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer" "$1" >/dev/null; then
        echo "sanitize: sanitizer report found in $1" >&2
        exit 1
    fi
}

# The sanitized extension build (the slow part) runs in the background while (a) runs.
mkdir -p "$TMP/lib/rankcore"
(cd "$ROOT" && RANKCORE_SANITIZE=1 "$PYTHON" setup.py -q build_ext --build-lib "$TMP/lib" --build-temp "$TMP/obj") \
    >"$TMP/build.log" 2>&1 &
build_pid=$!

echo "== (a) native driver"
"$CXX" -std=c++17 -Wall -Wextra "${SAN_FLAGS[@]}" -fno-sanitize-recover=undefined -I"$ROOT/cpp/include" \
    "$ROOT/cpp/tests/test_native.cpp" "$ROOT/cpp/src/dispatch.cpp" -o "$TMP/test_native" -pthread
# The driver itself loops over every kernel this CPU supports.
set +e
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" "$TMP/test_native" >"$TMP/native.log" 2>&1
status=$?
set -e
cat "$TMP/native.log"
fail_on_reports "$TMP/native.log"
[ "$status" -eq 0 ] || { echo "sanitize: native driver failed ($status)" >&2; exit 1; }

echo "== (b) sanitized extension + tests/test_kernels.py tests/test_response.py tests/test_core.py tests/test_topk.py tests/test_compressed.py"
wait "$build_pid" || { cat "$TMP/build.log"; exit 1; }
if ! ls "$TMP"/lib/rankcore/_core*.so >/dev/null 2>&1; then
    cat "$TMP/build.log"
    echo "sanitize: the sanitized extension was not built" >&2
    exit 1
fi
# The package's Python files, subpackages included (not the in-place extension).
(cd "$ROOT/src" && find rankcore -name "*.py" -exec cp --parents {} "$TMP/lib/" \;)
# libstdc++ is preloaded too: python is not linked against it, so without it ASAN cannot
# resolve the real __cxa_throw when the extension throws its first C++ exception.
PRELOAD="$("$CXX" -print-file-name=libasan.so) $("$CXX" -print-file-name=libstdc++.so)"
run_py() { (cd "$ROOT" && PYTHONPATH="$TMP/lib" LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="detect_leaks=0" "$PYTHON" "$@"); }
run_py -c "import rankcore._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__" "$TMP/lib"
set +e
run_py -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_response.py tests/test_core.py tests/test_topk.py tests/test_compressed.py \
    -k "not numba" >"$TMP/pytest.log" 2>&1
status=$?
set -e
tail -n 30 "$TMP/pytest.log"
fail_on_reports "$TMP/pytest.log"
[ "$status" -eq 0 ] || { echo "sanitize: tests failed ($status)" >&2; exit 1; }
echo "sanitize: OK"
