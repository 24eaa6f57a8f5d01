#!/usr/bin/env bash
# Builds the default toolchain into an engine: `scripts/toolchain-into.sh [ENGINE]` (podman,
# docker or unix:///path; default: the engine berth finds). The node builds toolchains, so a
# node of its own runs for it, with a home in a temporary directory, and stops when it is done;
# the toolchain itself is kept where every node finds it (BERTH_CACHE, the engine's storage).
set -euo pipefail
cd "$(dirname "$0")/.."
home=$(mktemp -d /tmp/berth-toolchain-node.XXXXXX)
pid=
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$home"
}
trap stop EXIT
trap 'exit 130' INT TERM
export BERTH_HOME="$home"
if [ -n "${1:-}" ]; then export BERTH_ENGINE="$1"; fi
node bin/berth daemon >"$home/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -S "$home/berth.sock" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$home/daemon.log" >&2
    exit 1
  fi
  sleep 0.1
done
BERTH_NO_AUTOSTART=1 node bin/berth toolchain build
