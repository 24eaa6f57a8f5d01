// Many nodes: node add/ls/rm, ls --all, enter (pull local, or --attach), push, forward. The
// orchestration is the SDK's (src/sdk/nodes.ts, enter.ts, forward.ts); this is its command line.
import { BerthError } from '../../core/errors.js';
import { enter, push } from '../../sdk/enter.js';
import { forward } from '../../sdk/forward.js';
import { addNode, listEverywhere, nodeStatuses, removeNode } from '../../sdk/nodes.js';
import { bool, flag, parseArgs } from '../args.js';
import { printJson, statusCell, table } from '../output.js';
import { byAttention } from '../../core/attention.js';
import { Progress, trace } from '../progress.js';
import { cmdShell } from './runtime.js';
import { connectLocal } from '../../sdk/connect.js';

export async function cmdNode(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json'], value: ['token-file', 'token', 'ca', 'registry'] });
  if (sub === 'add') {
    const [name, url] = p.positionals;
    if (!name || !url) throw new BerthError('usage', 'usage: berth node add NAME tcp://HOST:PORT --token-file FILE [--ca FILE]');
    const { entry, node: info } = await addNode(name, url, {
      tokenFile: flag(p, 'token-file'),
      token: flag(p, 'token'),
      ca: flag(p, 'ca'),
      registry: flag(p, 'registry'),
    });
    if (bool(p, 'json')) printJson({ name, ...entry, node: info });
    else process.stdout.write(`added ${name}: node ${info.node} (${info.engine.name} ${info.engine.version}) at ${entry.url}\n`);
    return 0;
  }
  if (sub === 'rm') {
    const name = p.positionals[0];
    if (!name) throw new BerthError('usage', 'usage: berth node rm NAME');
    removeNode(name);
    if (bool(p, 'json')) printJson({ removed: name });
    else process.stdout.write(`removed ${name}\n`);
    return 0;
  }
  if (sub === 'info') {
    const client = await connectLocal({ autostart: true });
    try {
      const info = await client.node();
      if (bool(p, 'json')) printJson(info);
      else {
        const s = info.storage;
        process.stdout.write(
          `node ${info.node} (berth ${info.version}), engine ${info.engine.name} ${info.engine.version} at ${info.engine.endpoint}\n` +
            (s ? `storage: ${s.kind === 'btrfs' ? 'copy-on-write (btrfs)' : 'whole copies'} at ${s.root}: ${s.reason}\n` : ''),
        );
      }
      return 0;
    } finally {
      client.close();
    }
  }
  if (sub === 'ls') {
    const rows = await nodeStatuses();
    if (bool(p, 'json')) printJson(rows);
    else
      process.stdout.write(
        table([
          ['NODE', 'URL', 'STATUS', 'ENGINE'],
          ...rows.map((r) => [r.name, r.url, r.reachable ? 'up' : `down: ${r.error ?? ''}`, r.engine ?? '-']),
        ]) + '\n',
      );
    return 0;
  }
  throw new BerthError(
    'usage',
    'usage: berth node add NAME tcp://HOST:PORT --token-file FILE | berth node ls | berth node info | berth node rm NAME',
  );
}

/** `ls --all`: every environment on every node, side by side. */
export async function listAll(json: boolean): Promise<number> {
  const all = await listEverywhere();
  const unreachable = all.unreachable;
  // Those waiting for a human first, then the blocked; by node and name within each.
  const envs = byAttention(all.envs);
  if (json) printJson({ envs, unreachable });
  else {
    const rows = [['NODE/NAME', 'STATE', 'STATUS', 'COMMIT', 'AGENT', 'TASK']];
    for (const e of envs)
      rows.push([
        e.node === 'local' ? e.name : `${e.node}/${e.name}`,
        e.state,
        statusCell(e),
        e.commit.slice(0, 12),
        e.labels.agent ?? '-',
        e.labels.task ?? '-',
      ]);
    process.stdout.write(table(rows) + '\n');
    for (const p of unreachable) process.stderr.write(`berth: node ${p}\n`);
  }
  return unreachable.length ? 10 : 0;
}

export async function cmdEnter(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['attach', 'no-shell', 'json'], value: ['as', 'registry'] });
  const what = p.positionals[0];
  if (!what) throw new BerthError('usage', 'usage: berth enter NODE/ENV [--attach] [--no-shell] [--as NAME]');
  if (bool(p, 'attach')) return cmdShell([what, ...(p.rest.length ? ['--', ...p.rest] : [])]);
  const bar = new Progress('enter', bool(p, 'json'));
  const e = await enter(what, {
    as: flag(p, 'as'),
    registry: flag(p, 'registry'),
    onProgress: (m, f) => bar.update(m, f),
    trace,
  });
  bar.done(`${e.env.name} is here (${e.enterMs} ms); \`berth push ${e.env.name}\` sends your changes back`);
  if (bool(p, 'json')) printJson({ ...e.env, enterMs: e.enterMs, transferred: e.transferred, toolchainPulled: e.toolchainPulled });
  if (bool(p, 'no-shell') || bool(p, 'json')) return 0;
  return await cmdShell([e.env.name]);
}

export async function cmdPush(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', 'usage: berth push NAME');
  const bar = new Progress('push', bool(p, 'json'));
  try {
    const r = await push(name, { onProgress: (m, f) => bar.update(m, f) });
    bar.done(`${r.files.length} file(s) applied to ${r.to} (${r.pushMs} ms)`);
    if (bool(p, 'json')) printJson({ applied: r.applied, files: r.files, conflicts: r.conflicts, snapshot: r.snapshot, pushMs: r.pushMs });
    return 0;
  } catch (err) {
    // As git says it, one line per file, before the one-line error.
    const files = (err as { files?: unknown }).files;
    if (err instanceof BerthError && err.code === 'conflict' && Array.isArray(files))
      for (const f of files) process.stderr.write(`CONFLICT (content): Merge conflict in ${String(f)}\n`);
    throw err;
  }
}

export async function cmdForward(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['local'] });
  const [what, portText] = p.positionals;
  const port = Number(portText);
  if (!what || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new BerthError('usage', 'usage: berth forward [NODE/]ENV PORT [--local PORT]');
  const fwd = await forward(what, port, { localPort: Number(flag(p, 'local') ?? port) });
  if (bool(p, 'json')) printJson({ env: what, port, local: fwd.local });
  else process.stderr.write(`berth: ${what} port ${port} is on ${fwd.local}; Ctrl-C stops\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await fwd.close();
  return 0;
}

/**
 * The other half of `git fetch ext::…`: git's protocol over stdio, upload-pack in the
 * environment. It talks only to a berth node over http(s), and ends with the git that runs it.
 */
export async function cmdGitUploadPack(argv: string[]): Promise<number> {
  const service = argv[0];
  if (service !== 'git-upload-pack') throw new BerthError('usage', 'only git-upload-pack is served');
  const url = process.env.BERTH_UPLOAD_URL;
  const env = process.env.BERTH_UPLOAD_ENV;
  if (!url || !env) throw new BerthError('usage', 'BERTH_UPLOAD_URL and BERTH_UPLOAD_ENV are required');
  if (!/^https?:\/\/[^/\s@]+\/?$/.test(url)) throw new BerthError('usage', 'BERTH_UPLOAD_URL must be http(s)://HOST:PORT');
  const { NodeClient: Client } = await import('../../client/client.js');
  const client = new Client({ url, token: process.env.BERTH_UPLOAD_TOKEN || undefined, ca: process.env.BERTH_UPLOAD_CA || undefined });
  const handle = client.execStream(
    env,
    { argv: ['git', '-c', 'uploadpack.allowAnySHA1InWant=true', 'upload-pack', '--strict', '/workspace/.git'], interactiveStdin: true },
    { stdout: (c) => process.stdout.write(c), stderr: (c) => process.stderr.write(c) },
  );
  process.stdin.on('data', (c: Buffer) => handle.writeStdin(c));
  process.stdin.on('end', () => handle.endStdin());
  // The git that started this is gone (killed, say): so is the reason to run.
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    handle.kill('SIGKILL');
    process.exit(1);
  }, 500);
  try {
    const r = await handle.wait();
    return r.exitCode;
  } finally {
    clearInterval(watch);
    client.close();
    process.stdin.destroy();
  }
}
