// Finding every process of one command in /proc and signalling it, to end them all. Read
// straight from the kernel with no process of our own, so it works when the environment has
// no pids left, and signalled as found: the first process of a fork bomb seen stops its whole
// process group, so the rest of the walk does not compete with the bomb for the CPU.
import { readdirSync, readFileSync } from 'node:fs';

/** Whose processes: the descendants of `root`, or those whose environment holds `marker`. */
export type Selector = { root: number } | { marker: string };

export interface Signalled {
  /** Processes that took the signal. */
  found: number;
  /** Of those, how many were not stopped when found. */
  running: number;
}

interface Stat {
  pid: number;
  state: string;
  ppid: number;
  pgid: number;
}

function pidsInProc(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc'); // in pid order, so parents mostly come before children
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const n of names) {
    const c = n.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(n));
  }
  return out;
}

function readStat(pid: number): Stat | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined; // gone while we looked
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
  const state = f[0] ?? '';
  if (state === 'Z' || state === 'X') return undefined; // left to its reaper
  return { pid, state, ppid: Number(f[1]), pgid: Number(f[2]) };
}

function hasMarker(pid: number, needle: string): boolean {
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    return environ.startsWith(needle) || environ.includes(`\0${needle}`);
  } catch {
    return false;
  }
}

/**
 * Sends `signal` to every process `who` selects, and to each one's process group (never a
 * group in `spare`, nor the agent's own): members forked a moment ago are reached too.
 */
export function signalCommand(who: Selector, signal: NodeJS.Signals, spare: number[]): Signalled {
  const groups = new Set([...spare, 0, 1, process.pid]);
  const inTree = new Set<number>('root' in who ? [who.root] : []);
  const needle = 'marker' in who ? `${who.marker}\0` : '';
  const result: Signalled = { found: 0, running: 0 };
  const hit = (s: Stat): void => {
    inTree.add(s.pid);
    if (!groups.has(s.pgid)) {
      groups.add(s.pgid);
      try {
        process.kill(-s.pgid, signal);
      } catch {
        /* the group is gone */
      }
    }
    try {
      process.kill(s.pid, signal);
      result.found++;
      if (s.state !== 'T' && s.state !== 't') result.running++;
    } catch {
      /* already gone */
    }
  };
  const later: Stat[] = [];
  for (const pid of pidsInProc()) {
    if (pid === process.pid || pid === 1 || inTree.has(pid)) continue;
    if ('marker' in who) {
      if (!hasMarker(pid, needle)) continue;
      const s = readStat(pid);
      if (s) hit(s);
      continue;
    }
    const s = readStat(pid);
    if (!s) continue;
    if (inTree.has(s.ppid)) hit(s);
    else later.push(s);
  }
  // A child read before its parent (pids wrap around): settle them now the tree is known.
  for (let grew = true; grew;) {
    grew = false;
    for (const s of later) {
      if (!inTree.has(s.pid) && inTree.has(s.ppid)) {
        hit(s);
        grew = true;
      }
    }
  }
  return result;
}
