import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';

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

/**
 * Makes the directory `dir` (inside the workspace) a real directory, as a checkout would: a
 * link or a file in the way of any of its components is replaced by a directory, so nothing
 * written beneath it lands anywhere else (a restore makes the workspace what the snapshot has).
 */
export function makeRealDirs(dir: string): void {
  const rel = relative(WORKDIR, dir);
  if (rel === '..' || rel.startsWith('../') || isAbsolute(rel)) throw outside(`path is outside the workspace: ${dir}`);
  let cur = WORKDIR;
  for (const part of rel.split('/').filter(Boolean)) {
    cur = join(cur, part);
    let isDir = false;
    try {
      isDir = lstatSync(cur).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (isDir) continue;
    rmSync(cur, { force: true, recursive: true });
    mkdirSync(cur);
  }
}
