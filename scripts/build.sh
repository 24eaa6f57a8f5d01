#!/usr/bin/env bash
# Compiles berth: TypeScript to dist/, and the small terminal helper the agent uses.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
cp src/agent/package.json dist/src/agent/package.json
cc -O2 -Wall -o dist/src/agent/berth-pty src/agent/pty/berth-pty.c -lutil
