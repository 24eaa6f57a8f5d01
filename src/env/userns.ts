// User namespaces: root in an environment is an unprivileged uid range on the host.
//
// On Podman the node asks for the mapping per container (its range, read from /etc/subuid and
// /etc/subgid for the user `berth`). Docker 20.10 has no per-container mapping: its daemon
// remaps every container when started with `userns-remap` (scripts/private-engines.sh does),
// and the node reads the range the daemon chose from the daemon's data root. Either way the
// node owns the environment's workspace and run directory by the range's first uid, so root
// inside can write them and nothing else on the host is writable from inside.
import { execFile } from 'node:child_process';
import { lstatSync, readFileSync } from 'node:fs';
import type { IdMap } from '../engine/engine.js';

export type { IdMap };

/** Used when /etc/subuid names no range for the node's user: the conventional first range. */
export const DEFAULT_ID_MAP: IdMap = { uid: 100000, gid: 100000, size: 65536 };

/** The user whose subordinate ranges environments use (and the name dockerd's userns-remap takes). */
export const USERNS_USER = 'berth';

/**
 * The mapping environments get on an engine that lets the node choose (Podman): BERTH_USERNS=host
 * turns user namespaces off (null); otherwise the range /etc/subuid and /etc/subgid give the
 * user `berth` (BERTH_USERNS_USER), or DEFAULT_ID_MAP.
 */
export function loadIdMap(env: NodeJS.ProcessEnv = process.env, files = { subuid: '/etc/subuid', subgid: '/etc/subgid' }): IdMap | null {
  if (env.BERTH_USERNS === 'host') return null;
  const user = env.BERTH_USERNS_USER || USERNS_USER;
  const u = subordinateRange(files.subuid, user);
  const g = subordinateRange(files.subgid, user);
  if (!u || !g) return DEFAULT_ID_MAP;
  return { uid: u.start, gid: g.start, size: Math.min(u.count, g.count, 65536) };
}

/** The first `user:start:count` line for a user, when it spans at least the 65536 ids a distribution needs. */
export function subordinateRange(path: string, user: string): { start: number; count: number } | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name !== user || start === undefined || count === undefined) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && s > 0 && Number.isSafeInteger(c) && c >= 65536) return { start: s, count: c };
  }
  return null;
}

/**
 * Owns a tree by the environment's root, without following links (a link planted in the
 * workspace changes owner itself, never its target). Cheap when it is owned so already
 * (a copy-on-write fork of a workspace that was).
 */
export async function ownTree(dir: string, ids: IdMap | null, signal?: AbortSignal): Promise<void> {
  if (!ids) return;
  const st = lstatSync(dir);
  if (st.uid === ids.uid && st.gid === ids.gid && !st.isSymbolicLink()) {
    // Only the top is known; the tree below was written by the node or by the environment.
    // A fresh checkout is owned by the node, so the top tells which one it is.
    return;
  }
  await new Promise<void>((resolve, reject) => {
    execFile('chown', ['-R', '-h', '-P', `${ids.uid}:${ids.gid}`, '--', dir], { signal, timeout: 300_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`chown ${dir}: ${String(stderr).trim() || err.message}`)) : resolve(),
    );
  });
}
