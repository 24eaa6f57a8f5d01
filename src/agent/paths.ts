import { isAbsolute, resolve } from 'node:path';

export const WORKDIR = process.env.BERTH_WORKDIR ?? '/workspace';
export const RUN_DIR = '/.berth/run';

/** Paths are relative to the workspace; berth's own mounts and kernel files are out of bounds. */
export function resolveInside(p: string): string {
  if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) throw outside('invalid path');
  const abs = isAbsolute(p) ? resolve(p) : resolve(WORKDIR, p);
  if (abs === '/.berth' || abs.startsWith('/.berth/') || abs.startsWith('/proc/') || abs.startsWith('/sys/')) {
    throw outside(`path is outside the environment's files: ${p}`);
  }
  return abs;
}

function outside(message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = 'OUTSIDE';
  return e;
}
