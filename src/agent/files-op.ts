// Listing a directory inside the environment (reads and writes are in agent.ts). Links are
// reported as links, never followed.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DirEntry } from './protocol.js';

const MAX_ENTRIES = 10_000;

export async function listDir(dir: string): Promise<DirEntry[]> {
  const names = (await readdir(dir)).sort().slice(0, MAX_ENTRIES);
  const out: DirEntry[] = [];
  for (const name of names) {
    try {
      const st = await lstat(join(dir, name));
      const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
      out.push({ name, type, size: st.size, mode: st.mode & 0o7777, mtime: st.mtime.toISOString() });
    } catch {
      /* gone while listing */
    }
  }
  return out;
}
