// Writes the error table (src/core/errors.ts) as a C header for the native exec client, so the
// exit codes it gives for the node's errors come from the one table. scripts/build.sh runs it.
import { ERROR_TABLE } from '../../core/errors.js';

export function errorTableHeader(): string {
  const rows = Object.entries(ERROR_TABLE).map(([code, { exit }]) => `  {${JSON.stringify(code)}, ${exit}},`);
  return [
    '/* Generated from src/core/errors.ts by src/cli/native/error-table.ts: do not edit. */',
    'static const struct { const char *code; int exit; } ERROR_TABLE[] = {',
    ...rows,
    '};',
    '',
  ].join('\n');
}

process.stdout.write(errorTableHeader());
