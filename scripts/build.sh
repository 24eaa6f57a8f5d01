#!/usr/bin/env bash
# Compiles berth: TypeScript to dist/; the two small helpers the agent uses (terminals, and the
# parent that keeps every process of a command findable); and the native `berth exec` client
# (its exit codes come from the error table, written as a header); and the contract's answer
# shapes, which the client checks answers against.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
cp src/agent/package.json dist/src/agent/package.json
# The contract's answers as plain data: the client checks them without loading zod.
node scripts/gen-shapes.mjs
cc -O2 -Wall -o dist/src/agent/berth-pty src/agent/pty/berth-pty.c -lutil
# Static where the C library allows: it starts in every command's path, and skips the loader.
cc -O2 -Wall -static -o dist/src/agent/berth-run src/agent/run/*.c 2>/dev/null ||
  cc -O2 -Wall -o dist/src/agent/berth-run src/agent/run/*.c
rm -rf dist/src/dashboard/web && cp -r src/dashboard/web dist/src/dashboard/web
node dist/src/cli/native/error-table.js > dist/src/cli/native/error-table.h
# Static too where it can be: every `berth exec` starts it, and the loader's work is most of a
# small program's start.
cc -O2 -Wall -static -I dist/src/cli/native -o dist/src/cli/native/berth-exec src/cli/native/*.c -lm 2>/dev/null ||
  cc -O2 -Wall -I dist/src/cli/native -o dist/src/cli/native/berth-exec src/cli/native/*.c -lm
