#!/usr/bin/env bash
# Compiles berth: TypeScript to dist/, the small terminal helper the agent uses, and the
# native `berth exec` client (its exit codes come from the error table, written as a header).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
cp src/agent/package.json dist/src/agent/package.json
cc -O2 -Wall -o dist/src/agent/berth-pty src/agent/pty/berth-pty.c -lutil
node dist/src/cli/native/error-table.js > dist/src/cli/native/error-table.h
cc -O2 -Wall -I dist/src/cli/native -o dist/src/cli/native/berth-exec src/cli/native/*.c -lm
