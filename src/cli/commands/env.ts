// new, ls, rm, describe, exec.
import type { CreateEnvRequest } from '../../core/api.js';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BerthError } from '../../core/errors.js';
import { isRemoteRepo } from '../../core/repo.js';
import { bool, flag, numberFlag, parseArgs } from '../args.js';
import { connectLocal } from '../../sdk/connect.js';
import { target } from '../../sdk/nodes.js';
import { place } from '../../sdk/placement.js';
import { envTable, printJson } from '../output.js';
import { byAttention, leaseNotice } from '../../core/attention.js';

export async function cmdNew(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    boolean: ['json', 'no-trust', 'no-pool'],
    value: [
      'repo',
      'ref',
      'toolchain',
      'agent',
      'task',
      'network',
      'memory',
      'isolation',
      'cpus',
      'pids',
      'identity',
      'snapshot',
      'ttl',
      'idle-ttl',
      'operator',
      'egress',
      'budget',
      'secret',
    ],
  });
  const name = p.positionals[0];
  if (!name || p.positionals.length > 1)
    throw new BerthError('usage', 'usage: berth new NAME --repo PATH|URL [--ref REF] [--agent A] [--task T]');
  const given = flag(p, 'repo');
  let identity = flag(p, 'identity');
  if (!given && !identity && !flag(p, 'snapshot'))
    throw new BerthError('usage', 'berth new needs --repo PATH|URL, --identity ID or --snapshot ID');
  // An identity can be given as a file holding it.
  if (identity && !identity.trim().startsWith('berth1.') && !identity.trim().startsWith('{') && existsSync(identity))
    identity = readFileSync(identity, 'utf8');
  // A path means the caller's directory, not the daemon's.
  const repo = given === undefined ? undefined : isRemoteRepo(given) ? given : resolve(given);
  const network = flag(p, 'network');
  if (network !== undefined && network !== 'egress' && network !== 'none') {
    throw new BerthError('usage', `--network must be egress or none, not ${JSON.stringify(network)}`);
  }
  const isolation = flag(p, 'isolation');
  if (isolation !== undefined && isolation !== 'runc' && isolation !== 'gvisor') {
    throw new BerthError('usage', `--isolation must be runc or gvisor, not ${JSON.stringify(isolation)}`);
  }
  const limits: NonNullable<CreateEnvRequest['limits']> = {};
  const mem = numberFlag(p, 'memory');
  const cpus = numberFlag(p, 'cpus');
  const pids = numberFlag(p, 'pids');
  if (mem !== undefined) limits.memoryMb = Math.round(mem);
  if (cpus !== undefined) limits.cpus = cpus;
  if (pids !== undefined) limits.pids = Math.round(pids);
  const operator = flag(p, 'operator');
  const placed = operator ? place(operator, name) : { target: name, reason: undefined };
  const t = await target(placed.target);
  const client = t.client;
  const env = await client.createEnv({
    name: t.env,
    ...(operator && placed.reason ? { placement: { operator, reason: placed.reason } } : {}),
    repo,
    ref: flag(p, 'ref'),
    toolchain: flag(p, 'toolchain'),
    agent: flag(p, 'agent'),
    task: flag(p, 'task'),
    network,
    ...(isolation ? { isolation } : {}),
    limits: Object.keys(limits).length ? limits : undefined,
    ...(bool(p, 'no-trust') ? { inheritTrust: false } : {}),
    ...(bool(p, 'no-pool') ? { noPool: true } : {}),
    identity,
    snapshot: flag(p, 'snapshot'),
    egress: flag(p, 'egress'),
    budget: flag(p, 'budget'),
    ttlSeconds: durationFlag(p, 'ttl'),
    idleTtlSeconds: durationFlag(p, 'idle-ttl'),
    ...(p.flags.get('secret')?.length ? { secrets: p.flags.get('secret') } : {}),
  });
  client.close();
  if (bool(p, 'json')) printJson(env);
  else process.stdout.write(`${env.name}  ${env.state}  ${env.commit.slice(0, 12)}  ${env.identity.hash.slice(0, 19)}\n`);
  const auto = env as typeof env & { autostartError?: string };
  if (auto.autostartError)
    process.stderr.write(`berth: ${env.name} is up, but a service from berth.json did not start: ${auto.autostartError}\n`);
  return 0;
}

export async function cmdLs(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'all'], value: [] });
  // Every node's environments need the remote commands' module; this node's do not.
  if (bool(p, 'all')) return (await import('./remote.js')).listAll(bool(p, 'json'));
  const client = await connectLocal({ autostart: true });
  // Those waiting for a human first, then the blocked; otherwise the node's order.
  const envs = byAttention(await client.listEnvs());
  client.close();
  if (bool(p, 'json')) printJson(envs);
  else process.stdout.write(envTable(envs) + '\n');
  return 0;
}

export async function cmdRm(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'discard'], value: [] });
  if (p.positionals.length === 0) throw new BerthError('usage', 'usage: berth rm NAME [NAME...] [--discard]');
  const client = await connectLocal({ autostart: true });
  client.close();
  const removed: Array<{ removed: string; snapshot: string | null }> = [];
  for (const name of p.positionals) {
    const t = await target(name);
    try {
      const r = await t.client.removeEnv(t.env, { discard: bool(p, 'discard') });
      removed.push({ ...r, removed: name });
    } finally {
      t.client.close();
    }
  }
  if (bool(p, 'json'))
    printJson({ removed: removed.map((r) => r.removed), snapshots: Object.fromEntries(removed.map((r) => [r.removed, r.snapshot])) });
  else
    process.stdout.write(
      removed.map((r) => `removed ${r.removed}${r.snapshot ? ` (work kept in snapshot ${r.snapshot.slice(0, 19)})` : ''}`).join('\n') +
        '\n',
    );
  return 0;
}

/** 90, 90s, 15m, 2h, 1d -> seconds. */
function durationFlag(p: Parameters<typeof flag>[0], key: string): number | undefined {
  const v = flag(p, key);
  if (v === undefined) return undefined;
  const m = /^(\d+)(s|m|h|d)?$/.exec(v);
  if (!m || Number(m[1]) <= 0) throw new BerthError('usage', `--${key} takes a duration like 90s, 15m, 2h or 1d, not ${JSON.stringify(v)}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

export async function cmdDescribe(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', 'usage: berth describe NAME');
  const t = await target(name);
  const client = t.client;
  const full = bool(p, 'json') ? await client.describe(t.env) : undefined;
  const env = full ? (full as unknown as Awaited<ReturnType<typeof client.getEnv>>) : await client.getEnv(t.env);
  client.close();
  if (full) printJson(full);
  else {
    const lines = [
      `name       ${env.name} (${env.id})`,
      `state      ${env.state}`,
      `repo       ${env.repo}`,
      `ref        ${env.ref} -> ${env.commit}`,
      `toolchain  ${env.toolchain}`,
      `engine     ${env.engine}${env.containerId ? ` container ${env.containerId.slice(0, 12)}` : ''}`,
      `network    ${env.network}`,
      `limits     ${env.limits.memoryMb} MB memory, ${env.limits.cpus} CPU, ${env.limits.pids} pids`,
      `labels     agent=${env.labels.agent ?? '-'} task=${env.labels.task ?? '-'}`,
      `identity   ${env.identity.hash}`,
      `           ${env.identity.short}`,
      `status     ${env.agentStatus ? `${env.agentStatus.state} since ${env.agentStatus.at}${env.agentStatus.note ? `: ${env.agentStatus.note}` : ''}` : '-'}`,
      `lease      ${env.lease ? leaseNotice(env.lease) : '-'}`,
      `handback   ${env.handback ? `by ${env.handback.by} at ${env.handback.at}${env.handback.note ? `: ${env.handback.note}` : ''}` : '-'}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  return 0;
}

export async function cmdExec(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'resume'], value: ['timeout', 'cwd', 'env'] });
  const name = p.positionals[0];
  const argvCmd = p.rest.length ? p.rest : p.positionals.slice(1);
  if (!name || argvCmd.length === 0)
    throw new BerthError('usage', 'usage: berth exec NAME [--timeout SECONDS] [--cwd DIR] [--env K=V] -- CMD [ARGS...]');
  const env: Record<string, string> = {};
  for (const kv of p.flags.get('env') ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new BerthError('usage', `--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const timeout = numberFlag(p, 'timeout');
  const req = {
    argv: argvCmd,
    cwd: flag(p, 'cwd'),
    env: Object.keys(env).length ? env : undefined,
    timeoutMs: timeout ? Math.round(timeout * 1000) : undefined,
    ...(bool(p, 'resume') ? { resume: true } : {}),
  };
  const t = await target(name);
  const client = t.client;
  const json = bool(p, 'json');
  const useStdin = !process.stdin.isTTY;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const handle = client.execStream(
    t.env,
    { ...req, interactiveStdin: useStdin },
    {
      stdout: (c) => (json ? out.push(c) : process.stdout.write(c)),
      stderr: (c) => (json ? err.push(c) : process.stderr.write(c)),
    },
  );
  if (useStdin) {
    process.stdin.on('data', (c: Buffer) => handle.feed(c, process.stdin));
    process.stdin.on('end', () => handle.endStdin());
    process.stdin.on('error', () => handle.endStdin());
  }
  // A reader that goes away (`| head`) ends the remote command, quietly.
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', () => {
      handle.kill('SIGPIPE');
      process.exit(141);
    });
  }
  // The same signals the native client (src/cli/native) passes on.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(sig, () => handle.kill(sig));
  try {
    const r = await handle.wait();
    if (json) {
      printJson({
        exitCode: r.exitCode,
        signal: r.signal,
        timedOut: r.timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timing: r.timing,
      });
    }
    if (r.timedOut) process.stderr.write(`berth: command timed out after ${timeout}s and was killed\n`);
    return r.exitCode;
  } finally {
    process.stdin.pause();
    process.stdin.destroy();
    client.close();
  }
}
