// A snapshot's manifest: what it holds, and the one check every consumer applies to it before
// use (import, fork, restore, push, gc, enter), so no path or shape that a fork would refuse
// is ever recorded, and none that could leave a workspace is ever applied. Pure: the node
// applies it, and the SDK checks a manifest with it before moving a snapshot between nodes.
import { normalize, sep } from 'node:path';
import { BerthError } from './errors.js';

export interface SnapshotEntry {
  path: string;
  kind: 'file' | 'exec' | 'symlink' | 'deleted';
  blob?: string;
  size?: number;
  artifact?: boolean;
}

export interface SnapshotManifest {
  version: 1;
  base: string;
  head: { branch: string | null; commit: string | null };
  entries: SnapshotEntry[];
}

const KINDS = new Set(['file', 'exec', 'symlink', 'deleted']);
const ENTRY_KEYS = new Set(['path', 'kind', 'blob', 'size', 'artifact']);
const TOP_KEYS = new Set(['version', 'base', 'head', 'entries']);
/** The longest link target the kernel accepts (PATH_MAX less the NUL). */
export const MAX_LINK_TARGET = 4095;

/** Why a path may not be used: it climbs, is absolute, or goes into a `.git` (in any case). */
function unsafe(p: string): boolean {
  const n = normalize(p);
  return (
    !p || p.includes('\0') || n.startsWith('..') || n.startsWith(sep) || n.split(sep).some((c) => c === '..' || c.toLowerCase() === '.git')
  );
}

/** A path from a manifest or a request: relative, normalized, and never into .git. */
export function safeRelative(p: string): string {
  if (unsafe(p)) throw new BerthError('corrupt', `snapshot has an unsafe path ${JSON.stringify(p)}`);
  return normalize(p);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks that `value` is a manifest this node can apply: its shape, every entry's path
 * (relative, in normal form, outside .git), kind and blob hash, no path twice, and nothing
 * written beneath another entry's file or link. `label` names the snapshot in the error.
 */
export function validateManifest(value: unknown, label: string): SnapshotManifest {
  const bad = (why: string): BerthError => new BerthError('corrupt', `snapshot ${label} ${why}`, 'use another snapshot');
  if (!isRecord(value)) throw bad('is not a valid manifest');
  for (const k of Object.keys(value)) if (!TOP_KEYS.has(k)) throw bad(`has an unknown field ${JSON.stringify(k)}`);
  if (value.version !== 1) throw bad(`has version ${JSON.stringify(value.version) ?? 'none'}, not 1`);
  if (typeof value.base !== 'string' || !/^[0-9a-f]{40}$/.test(value.base)) throw bad('has no valid base commit');
  const head = value.head;
  if (
    !isRecord(head) ||
    Object.keys(head).some((k) => k !== 'branch' && k !== 'commit') ||
    !(head.branch === null || (typeof head.branch === 'string' && /^[A-Za-z0-9._/-]{1,255}$/.test(head.branch))) ||
    !(head.commit === null || (typeof head.commit === 'string' && /^[0-9a-f]{40}$/.test(head.commit)))
  ) {
    throw bad('has an invalid head (a branch name and a commit id, or nulls)');
  }
  if (!Array.isArray(value.entries)) throw bad('has no list of entries');
  const kinds = new Map<string, string>();
  value.entries.forEach((e: unknown, i) => {
    if (!isRecord(e)) throw bad(`has an entry ${i} that is not an object`);
    const p = e.path;
    if (typeof p !== 'string') throw bad(`has an entry ${i} whose path is not a string`);
    const name = JSON.stringify(p);
    if (unsafe(p)) throw bad(`has an unsafe path ${name}`);
    if (normalize(p) !== p || p.endsWith(sep)) throw bad(`has a path not in normal form ${name}`);
    for (const k of Object.keys(e)) if (!ENTRY_KEYS.has(k)) throw bad(`has an unknown field ${JSON.stringify(k)} at ${name}`);
    if (typeof e.kind !== 'string' || !KINDS.has(e.kind)) throw bad(`has an unknown kind ${JSON.stringify(e.kind) ?? 'none'} at ${name}`);
    if (e.kind === 'deleted') {
      if (e.blob !== undefined || e.size !== undefined || e.artifact !== undefined) throw bad(`has content on the deletion ${name}`);
    } else {
      if (typeof e.blob !== 'string' || !/^[0-9a-f]{64}$/.test(e.blob)) throw bad(`has no valid blob hash at ${name}`);
      if (e.size !== undefined && !(Number.isSafeInteger(e.size) && (e.size as number) >= 0)) throw bad(`has an invalid size at ${name}`);
      if (e.artifact !== undefined && typeof e.artifact !== 'boolean') throw bad(`has an invalid artifact flag at ${name}`);
    }
    if (kinds.has(p)) throw bad(`has the path ${name} twice`);
    kinds.set(p, e.kind);
  });
  // A file or link that is also a directory of another entry: nothing could hold both.
  for (const [p, kind] of kinds) {
    if (kind === 'deleted') continue;
    const parts = p.split(sep);
    for (let i = 1; i < parts.length; i++) {
      const up = parts.slice(0, i).join(sep);
      const upKind = kinds.get(up);
      if (upKind && upKind !== 'deleted')
        throw bad(`writes ${JSON.stringify(p)} beneath the ${upKind === 'symlink' ? 'link' : 'file'} ${JSON.stringify(up)}`);
    }
  }
  return value as unknown as SnapshotManifest;
}
