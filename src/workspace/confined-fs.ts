// Files beneath a root that an environment can rewrite while the node works on it. Every
// path is opened one component at a time, each through the directory already opened
// (`/proc/self/fd/<dirfd>/<name>`: openat() semantics) and with O_NOFOLLOW, so no link the
// environment planted, before or during the walk, can take a read or a write out of the root.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

const REASONS = {
  link: 'is a symbolic link',
  not_directory: 'is not a directory',
  missing: 'does not exist',
  not_file: 'is not a regular file',
  not_empty: 'is a directory with files in it',
  too_large: 'is too large',
} as const;

/** Why a confined path could not be used; `component` is where the walk stopped. */
export class ConfinedPathError extends Error {
  constructor(
    readonly reason: keyof typeof REASONS,
    readonly component: string,
  ) {
    super(`${component} ${REASONS[reason]}`);
    this.name = 'ConfinedPathError';
  }
}

/** A directory held open; names inside it resolve against it, never against a path. */
export class ConfinedDir {
  private constructor(
    private fd: number,
    /** The components from the root, for messages. */
    readonly rel: string,
  ) {}

  /** The root itself. It is the node's own path, so only its last component is checked. */
  static openRoot(root: string): ConfinedDir {
    return new ConfinedDir(openSync(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), '');
  }

  /** Opens the directory `parts` beneath `root`; with `create`, makes the missing ones. */
  static open(root: string, parts: string[], opts: { create?: boolean; replaceFiles?: boolean } = {}): ConfinedDir {
    let dir = ConfinedDir.openRoot(root);
    try {
      for (const p of parts) {
        const next = dir.openDir(p, opts);
        dir.close();
        dir = next;
      }
      return dir;
    } catch (err) {
      dir.close();
      throw err;
    }
  }

  /** The path naming `name` in this directory, resolved by the kernel against the open directory. */
  at(name: string): string {
    if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new Error(`invalid path component ${JSON.stringify(name)}`);
    }
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  private named(name: string): string {
    return this.rel ? `${this.rel}/${name}` : name;
  }

  /** What `name` is here, without following it; undefined when absent. */
  kind(name: string): 'file' | 'directory' | 'link' | 'other' | undefined {
    const st = lstatSync(this.at(name), { throwIfNoEntry: false });
    if (!st) return undefined;
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
  }

  /**
   * The subdirectory `name`. A link there is refused, whatever it points at; with `create`, a
   * missing one is made, and with `replaceFiles`, a file in its place is removed first.
   */
  openDir(name: string, opts: { create?: boolean; replaceFiles?: boolean } = {}): ConfinedDir {
    for (let attempt = 0; ; attempt++) {
      try {
        return new ConfinedDir(openSync(this.at(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW), this.named(name));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (attempt > 2 || (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP')) throw err;
        const kind = this.kind(name);
        if (kind === 'link') throw new ConfinedPathError('link', this.named(name));
        if (kind === undefined) {
          if (!opts.create) throw new ConfinedPathError('missing', this.named(name));
          mkdirSync(this.at(name), 0o755);
        } else if (kind !== 'directory') {
          if (!opts.replaceFiles) throw new ConfinedPathError('not_directory', this.named(name));
          unlinkSync(this.at(name));
          mkdirSync(this.at(name), 0o755);
        }
      }
    }
  }

  /** The whole content of the regular file `name`, at most `maxBytes`. FIFOs and devices are refused without blocking. */
  readFile(name: string, maxBytes: number): Buffer {
    let fd: number;
    try {
      fd = openSync(this.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new ConfinedPathError('link', this.named(name));
      if (code === 'ENOENT') throw new ConfinedPathError('missing', this.named(name));
      throw err;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new ConfinedPathError('not_file', this.named(name));
      if (st.size > maxBytes) throw new ConfinedPathError('too_large', this.named(name));
      const buf = Buffer.alloc(st.size);
      let n = 0;
      while (n < buf.length) {
        const got = readSync(fd, buf, n, buf.length - n, n);
        if (got === 0) break;
        n += got;
      }
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  /** Writes `name` atomically: a new file beside it, renamed over whatever was there (a link is replaced, not followed). */
  writeFile(name: string, data: Buffer, mode: number): void {
    const tmp = `.berth-${randomBytes(6).toString('hex')}`;
    const fd = openSync(this.at(tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    try {
      try {
        let n = 0;
        while (n < data.length) n += writeSync(fd, data, n, data.length - n);
        fchmodSync(fd, mode);
      } finally {
        closeSync(fd);
      }
      this.clearForFile(name);
      renameSync(this.at(tmp), this.at(name));
    } catch (err) {
      try {
        unlinkSync(this.at(tmp));
      } catch {
        /* already gone */
      }
      throw err;
    }
  }

  /** Makes `name` a symbolic link to `target`, byte for byte (it is never resolved here). */
  symlink(name: string, target: string | Buffer): void {
    this.clearForFile(name);
    this.remove(name);
    symlinkSync(target, this.at(name));
  }

  /** Removes the file or link `name`; nothing when absent. */
  remove(name: string): void {
    try {
      unlinkSync(this.at(name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      throw err;
    }
  }

  /** Removes the directory `name` if it is empty; false when it is not (or is gone, or is no directory). */
  removeEmptyDir(name: string): boolean {
    if (this.kind(name) !== 'directory') return false;
    try {
      rmdirSync(this.at(name));
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw err;
    }
  }

  /** An empty directory where a file is to go is removed; a directory with files in it is an error. */
  private clearForFile(name: string): void {
    if (this.kind(name) !== 'directory') return;
    try {
      rmdirSync(this.at(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY') throw new ConfinedPathError('not_empty', this.named(name));
      throw err;
    }
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}

/** Reads the small regular file at `parts` beneath `root`, through no link. */
export function readFileBeneath(root: string, parts: string[], maxBytes: number): Buffer {
  const name = parts[parts.length - 1];
  if (name === undefined) throw new Error('no file named');
  const dir = ConfinedDir.open(root, parts.slice(0, -1));
  try {
    return dir.readFile(name, maxBytes);
  } finally {
    dir.close();
  }
}
