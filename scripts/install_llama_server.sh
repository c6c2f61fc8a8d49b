#!/usr/bin/env bash
# Install llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) into the venv,
# building its wheel at most once per machine.
#
# Why a script: the default build of llama-cpp-python crashes on its first completion on
# VMs whose CPUs advertise AMX, so it is built with portable CPU flags (below), and the
# build takes ~5+ minutes on 2 cores. The built wheel is cached, keyed by version and flags:
#   1. $REPO/.cache/wheels/            (this clone; gitignored)
#   2. ${XDG_CACHE_HOME:-~/.cache}/myopia/wheels/  (every clone on this machine)
# pip's own wheel cache is not trusted for this: it keys built wheels by the sdist only,
# not by CMAKE_ARGS, so it could hand back a default (crashing) build.
#
# Usage: scripts/install_llama_server.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
VERSION="0.3.36"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
TAG="$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)"   # the flags the wheel was built with
LOCAL_CACHE="$REPO/.cache/wheels"
USER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/myopia/wheels"

say() { echo "install_llama_server: $*" >&2; }

installed_version() {
    "$PY" -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))" 2>/dev/null || true
}

# A cached wheel lives in DIR/TAG/ (one folder per set of build flags).
find_wheel() {
    local dir
    for dir in "$LOCAL_CACHE/$TAG" "$USER_CACHE/$TAG"; do
        local whl
        whl="$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)"
        if [ -n "$whl" ]; then
            echo "$whl"
            return 0
        fi
    done
    return 1
}

build_wheel() {
    local tmp
    mkdir -p "$LOCAL_CACHE" "$USER_CACHE"
    tmp="$(mktemp -d "$LOCAL_CACHE/build.XXXXXX")"
    say "building llama-cpp-python $VERSION (portable CPU flags; ~5+ minutes on 2 cores)..."
    CMAKE_ARGS="$FLAGS" nice -n 10 "$PY" -m pip wheel --no-deps --no-cache-dir \
        --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$VERSION" >"$tmp/build.log" 2>&1 || {
        say "build failed; last lines of $tmp/build.log:"
        tail -n 20 "$tmp/build.log" >&2
        exit 1
    }
    local whl name
    whl="$(ls "$tmp"/llama_cpp_python-"$VERSION"-*.whl | head -n1)"
    name="$(basename "$whl")"
    # publish atomically into both caches (rename within the same filesystem)
    for dir in "$LOCAL_CACHE/$TAG" "$USER_CACHE/$TAG"; do
        mkdir -p "$dir"
        cp "$whl" "$dir/.$name.part" && mv -f "$dir/.$name.part" "$dir/$name"
    done
    rm -rf "$tmp"
}

if [ "$(installed_version)" = "$VERSION" ] && "$PY" -c "import llama_cpp.server" 2>/dev/null; then
    say "llama-cpp-python $VERSION [server] already installed"
    exit 0
fi

mkdir -p "$USER_CACHE"
exec 9>"$USER_CACHE/.lock"
flock 9   # one build at a time on this machine

WHEEL="$(find_wheel || true)"
if [ -z "$WHEEL" ]; then
    build_wheel
    WHEEL="$(find_wheel)"
else
    say "using cached wheel $WHEEL"
fi
# keep the wheel in both caches (cheap): this clone stays self-contained, and a later
# fresh clone on this machine finds it in the user-level cache
for dir in "$LOCAL_CACHE/$TAG" "$USER_CACHE/$TAG"; do
    if [ ! -e "$dir/$(basename "$WHEEL")" ]; then
        mkdir -p "$dir"
        cp "$WHEEL" "$dir/.part.whl" && mv -f "$dir/.part.whl" "$dir/$(basename "$WHEEL")"
    fi
done

"$PY" -m pip install -q -c "$REPO/constraints.txt" "${WHEEL}[server]"
say "installed llama-cpp-python $VERSION [server] from $(basename "$WHEEL")"
