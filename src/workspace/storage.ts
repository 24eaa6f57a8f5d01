// Where a node keeps workspaces and snapshot trees, chosen when the daemon starts.
//
// Copy-on-write is the default wherever the node can have it: as root on Linux with
// btrfs-progs, the node makes a sparse btrfs file system on a loop file in its home and mounts
// it, without a flag. Workspaces are then subvolumes, and a snapshot's tree (and every fork of
// it) is a subvolume snapshot, made in constant time whatever the workspace holds. Where it
// cannot (not root, no btrfs-progs, no loop device), trees are whole copies: forks still carry
// everything, at a cost that grows with the workspace.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBtrfsStorage, isBtrfs } from './btrfs.js';
import { migrateTree } from './trees.js';

export type StorageKind = 'btrfs' | 'copy';

export interface Storage {
  kind: StorageKind;
  /** Where `envs/` and `trees/` live: the home, or the copy-on-write file system in it. */
  workRoot: string;
  /** Why this path: what the node found, in a few words. */
  reason: string;
}

function hasProgram(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Picks the storage path: BERTH_STORAGE=copy or btrfs forces one (btrfs failing is fatal);
 * otherwise copy-on-write when the home is on btrfs, or when the node can make its own loop
 * file, and whole copies when it cannot. A node that made a loop file once always mounts it.
 */
export async function setupStorage(home: string, env: NodeJS.ProcessEnv, log: (l: string) => void): Promise<Storage> {
  const want = env.BERTH_STORAGE;
  const sizeGb = Number(env.BERTH_STORAGE_GB || 20);
  const image = join(home, 'storage.img');
  let storage: Storage;
  if (want === 'copy' && !existsSync(image)) storage = { kind: 'copy', workRoot: home, reason: 'BERTH_STORAGE=copy' };
  else if (isBtrfs(home)) storage = { kind: 'btrfs', workRoot: home, reason: 'the home is on btrfs' };
  else if (want === 'btrfs' || existsSync(image)) {
    storage = { kind: 'btrfs', workRoot: await ensureBtrfsStorage(home, sizeGb, log), reason: `a btrfs loop file (${image})` };
  } else {
    const why = cannotLoop();
    if (why) storage = { kind: 'copy', workRoot: home, reason: why };
    else {
      try {
        storage = { kind: 'btrfs', workRoot: await ensureBtrfsStorage(home, sizeGb, log), reason: `a btrfs loop file (${image})` };
      } catch (err) {
        rmSync(image, { force: true });
        storage = { kind: 'copy', workRoot: home, reason: `no copy-on-write: ${(err as Error).message}` };
      }
    }
  }
  if (storage.kind === 'copy')
    log(`berth: storage: whole copies (${storage.reason}); forks are complete but cost grows with the workspace`);
  if (storage.workRoot !== home) await migrateTrees(join(home, 'trees'), join(storage.workRoot, 'trees'), log);
  return storage;
}

function cannotLoop(): string | undefined {
  if (process.platform !== 'linux') return `copy-on-write needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'copy-on-write needs the node to run as root';
  if (!hasProgram('mkfs.btrfs')) return 'copy-on-write needs btrfs-progs (scripts/setup.sh installs it)';
  if (!existsSync('/dev/loop-control')) return 'copy-on-write needs loop devices (/dev/loop-control)';
  return undefined;
}

/**
 * A node that kept whole-copy trees and now has copy-on-write storage: each tree moves into
 * the new file system (copied, then the old one removed), so every snapshot still forks whole.
 */
async function migrateTrees(from: string, to: string, log: (l: string) => void): Promise<void> {
  if (!existsSync(from)) return;
  const names = readdirSync(from).filter((n) => /^[0-9a-f]{64}$/.test(n));
  for (const n of names) await migrateTree(join(from, n), join(to, n));
  rmSync(from, { recursive: true, force: true });
  if (names.length) log(`berth: storage: moved ${names.length} snapshot tree(s) into copy-on-write storage`);
}

/**
 * Unmounts the loop file a node mounted in its home, when the node stops holding no
 * environment (a throwaway home can then be deleted like any directory). A node whose
 * environments outlive it (their containers keep running) leaves it mounted for its next start.
 */
export function releaseStorage(storage: Storage, home: string, log: (l: string) => void): void {
  if (storage.kind !== 'btrfs' || storage.workRoot === home) return;
  let envs: string[] = [];
  try {
    envs = readdirSync(join(storage.workRoot, 'envs'));
  } catch {
    /* no envs directory: nothing in use */
  }
  if (envs.length) return;
  const r = spawnSync('umount', [storage.workRoot], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) log(`berth: storage: left ${storage.workRoot} mounted: ${(r.stderr || '').trim()}`);
}
