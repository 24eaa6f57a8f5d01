#!/usr/bin/env bash
# Compiles berth: TypeScript to dist/, and the two small helpers the agent uses (terminals, and
# the parent that keeps every process of a command findable).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
cp src/agent/package.json dist/src/agent/package.json
cc -O2 -Wall -o dist/src/agent/berth-pty src/agent/pty/berth-pty.c -lutil
# Static where the C library allows: it starts in every command's path, and skips the loader.
cc -O2 -Wall -static -o dist/src/agent/berth-run src/agent/run/berth-run.c 2>/dev/null ||
  cc -O2 -Wall -o dist/src/agent/berth-run src/agent/run/berth-run.c
