// pause, resume, id, snap, fork, restore, snapshots, gc, pool.
import { isRemoteRepo } from '../../core/repo.js';
import { resolve } from 'node:path';
import { BerthError } from '../../core/errors.js';
import { encodeIdentity, identityHash, type Identity } from '../../core/identity.js';
import { bool, flag, parseArgs } from '../args.js';
import { connectLocal } from '../../sdk/connect.js';
import { forkMany } from '../../sdk/forks.js';
import { target } from '../../sdk/nodes.js';
import { printJson, table } from '../output.js';

export async function cmdPause(argv: string[]): Promise<number> {
  return pauseOrResume(argv, 'pause');
}

export async function cmdResume(argv: string[]): Promise<number> {
  return pauseOrResume(argv, 'resume');
}

async function pauseOrResume(argv: string[], what: 'pause' | 'resume'): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: what === 'resume' ? ['budget'] : [] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', `usage: berth ${what} NAME${what === 'resume' ? ' [--budget egress=1GB,cpu=4h]' : ''}`);
  const t = await target(name);
  const client = t.client;
  try {
    // A budget raised first, so the environment does not resume over it.
    const budget = flag(p, 'budget');
    if (budget !== undefined) await client.setBudget(t.env, budget);
    const env = what === 'pause' ? await client.pause(t.env) : await client.resume(t.env);
    if (bool(p, 'json')) printJson(env);
    else process.stdout.write(`${env.name} ${env.state}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdId(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'snap'], value: [] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', 'usage: berth id NAME [--snap]');
  const t = await target(name);
  const client = t.client;
  try {
    let id = await client.identity(t.env);
    // --snap pins the current work too: the identity then recreates this exact state.
    if (bool(p, 'snap')) {
      const s = await client.snap(t.env);
      const pins: Identity = {
        repo: id.repo,
        ref: id.ref,
        toolchain: id.toolchain,
        snapshot: s.id,
        ...(id.cacheKeys ? { cacheKeys: id.cacheKeys } : {}),
      };
      id = { ...pins, hash: identityHash(pins), short: encodeIdentity(pins) };
    }
    if (bool(p, 'json')) printJson(id);
    else process.stdout.write(`${id.short}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdSnap(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['artifact'] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', 'usage: berth snap NAME [--artifact PATH]...');
  const t = await target(name);
  const client = t.client;
  try {
    const s = await client.snap(t.env, { artifacts: p.flags.get('artifact') });
    if (bool(p, 'json')) printJson(s);
    else process.stdout.write(`${s.id}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdFork(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['agent', 'task'] });
  const [snapshot, ...names] = p.positionals;
  if (!snapshot || names.length === 0) throw new BerthError('usage', 'usage: berth fork SNAPSHOT NAME [NAME...]');
  const client = await connectLocal({ autostart: true });
  try {
    const envs = await forkMany(client, snapshot, names, { agent: flag(p, 'agent'), task: flag(p, 'task') });
    // One name prints one environment, as it always has; several print a list.
    if (bool(p, 'json')) printJson(envs.length === 1 ? envs[0] : envs);
    else for (const env of envs) process.stdout.write(`${env.name}  ${env.state}  from ${env.origin.snapshot?.slice(0, 19)}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdRestore(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const [name, snapshot] = p.positionals;
  if (!name || !snapshot) throw new BerthError('usage', 'usage: berth restore NAME SNAPSHOT');
  const t = await target(name);
  const client = t.client;
  try {
    const r = await client.restore(t.env, snapshot);
    if (bool(p, 'json')) printJson(r);
    else process.stdout.write(`${name} restored to ${r.restored}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdSnapshots(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const client = await connectLocal({ autostart: true });
  try {
    const list = await client.snapshots();
    if (bool(p, 'json')) printJson(list);
    else {
      const rows = [['SNAPSHOT', 'ENV', 'BASE', 'FILES', 'BYTES', 'REASON', 'CREATED']];
      for (const s of list)
        rows.push([s.id.slice(0, 19), s.env ?? '-', s.base.slice(0, 12), String(s.files), String(s.bytes), s.reason, s.createdAt]);
      process.stdout.write(table(rows) + '\n');
    }
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdGc(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const client = await connectLocal({ autostart: true });
  try {
    const r = await client.gc();
    if (bool(p, 'json')) printJson(r);
    else process.stdout.write(`removed ${r.removed} blob(s), ${r.freedBytes} bytes; kept ${r.kept}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdPool(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json'], value: ['repo', 'ref', 'size'] });
  const client = await connectLocal({ autostart: true });
  try {
    if (sub === 'ls') {
      const pools = await client.pools();
      if (bool(p, 'json')) printJson(pools);
      else
        process.stdout.write(
          table([
            ['POOL', 'WARM', 'SIZE', 'COMMIT', 'REPO', 'TOOLCHAIN'],
            ...pools.map((x) => [x.id, String(x.warm), String(x.size), x.commit.slice(0, 12), x.repo, x.toolchain.slice(0, 19)]),
          ]) + '\n',
        );
      return 0;
    }
    if (sub !== 'set')
      throw new BerthError('usage', 'usage: berth pool set [TOOLCHAIN] --repo PATH|URL [--ref REF] --size N | berth pool ls');
    const repo = flag(p, 'repo');
    const sizeText = flag(p, 'size');
    const size = sizeText === undefined ? undefined : /^\d+$/.test(sizeText) ? Number(sizeText) : NaN;
    if (Number.isNaN(size)) throw new BerthError('usage', `--size must be a whole number, not ${JSON.stringify(sizeText)}`);
    if (!repo || size === undefined) throw new BerthError('usage', 'berth pool set needs --repo and --size');
    const pool = await client.setPool({
      toolchain: p.positionals[0],
      repo: isRemoteRepo(repo) ? repo : resolve(repo),
      ref: flag(p, 'ref'),
      size: Math.round(size),
    });
    if (bool(p, 'json')) printJson(pool);
    else process.stdout.write(`pool ${pool.id}: ${pool.size} warm environment(s) of ${pool.repo}@${pool.commit.slice(0, 12)}\n`);
    return 0;
  } finally {
    client.close();
  }
}
