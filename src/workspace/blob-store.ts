// Content-addressed storage: sha256 blobs, each written once, atomically (a temporary file
// renamed into place), and checked against its hash whenever it is read.
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../core/errors.js';

export class BlobStore {
  readonly blobs: string;
  readonly tmp: string;

  constructor(readonly root: string) {
    this.blobs = join(root, 'blobs');
    this.tmp = join(root, 'tmp');
    mkdirSync(this.blobs, { recursive: true });
    mkdirSync(this.tmp, { recursive: true });
  }

  path(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new BerthError('invalid_request', `invalid blob hash ${hash}`);
    return join(this.blobs, hash.slice(0, 2), hash);
  }

  has(hash: string): boolean {
    return existsSync(this.path(hash));
  }

  /** Stores `data`; returns its hash and whether it was new. */
  put(data: Buffer): { hash: string; added: boolean } {
    const hash = createHash('sha256').update(data).digest('hex');
    const dest = this.path(hash);
    if (existsSync(dest)) return { hash, added: false };
    mkdirSync(join(this.blobs, hash.slice(0, 2)), { recursive: true });
    const tmp = join(this.tmp, `${hash}.${randomBytes(4).toString('hex')}`);
    try {
      const fd = openSync(tmp, 'wx', 0o644);
      try {
        writeSync(fd, data);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, dest);
    } catch (err) {
      rmSync(tmp, { force: true });
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOSPC' || e.code === 'EDQUOT')
        throw new BerthError('no_space', 'the node ran out of disk space while storing a snapshot', 'free space, or run `berth gc`');
      throw err;
    }
    return { hash, added: true };
  }

  /** Reads a blob and proves it is what its name says. */
  get(hash: string): Buffer {
    let data: Buffer;
    try {
      data = readFileSync(this.path(hash));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new BerthError('corrupt', `blob ${hash.slice(0, 12)} is missing from the store`);
      throw err;
    }
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== hash)
      throw new BerthError(
        'corrupt',
        `blob ${hash.slice(0, 12)} is corrupt (its content hashes to ${actual.slice(0, 12)})`,
        'the store will not use it; fork from another snapshot',
      );
    return data;
  }

  /** Every stored hash, with its size and age. */
  *list(): Generator<{ hash: string; size: number; ageMs: number }> {
    for (const dir of readdirSync(this.blobs)) {
      for (const name of readdirSync(join(this.blobs, dir))) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        const st = statSync(join(this.blobs, dir, name));
        yield { hash: name, size: st.size, ageMs: Date.now() - st.mtimeMs };
      }
    }
  }

  remove(hash: string): void {
    rmSync(this.path(hash), { force: true });
  }

  /** Temporary files a crash left behind. */
  sweepTmp(olderThanMs = 60 * 60 * 1000): number {
    let n = 0;
    for (const name of readdirSync(this.tmp)) {
      const p = join(this.tmp, name);
      try {
        if (Date.now() - statSync(p).mtimeMs > olderThanMs) {
          rmSync(p, { recursive: true, force: true });
          n++;
        }
      } catch {
        /* gone */
      }
    }
    return n;
  }
}
