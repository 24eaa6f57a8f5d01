// `berth up`: the node in the foreground, with a demo environment and what to try next; and
// `berth daemon` when the CLI itself is asked for it (bin/berth sends `daemon` straight to the
// node's entry point, src/node/main.ts). The node runs as a process of its own (src/sdk/connect.ts).
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from '../../core/errors.js';
import { berthHome, localSocketPath } from '../../core/home.js';
import { nodeEntry, runNode, type RunningNode } from '../../sdk/connect.js';
import { bool, flag, parseArgs } from '../args.js';
import { ensureToolchain } from './toolchain.js';

/** The node's entry point in this process's place: its output, signals and exit code are its own. */
export async function cmdDaemon(argv: string[]): Promise<number> {
  const child = spawn(process.execPath, [nodeEntry(), 'daemon', ...argv], { stdio: 'inherit' });
  const forward = (s: NodeJS.Signals): void => void child.kill(s);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}

export async function cmdUp(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['no-demo', 'detach'], value: ['listen', 'dashboard'] });
  // A signal stops the node at once, whatever up is doing then (the work in flight then fails).
  let running: RunningNode | undefined;
  const stopped = stopSignal();
  void stopped.then(() => running?.stop());
  const node = (running = await runNode({ listen: flag(p, 'listen'), dashboard: flag(p, 'dashboard') }));
  const client = node.client;
  let dashboardUrl: string | undefined;
  try {
    await ensureToolchain({ node: client });
    // A one-time login link, when the node serves the dashboard (it answers 404 when it does not).
    dashboardUrl = await client.request<{ url: string }>('POST', '/dashboard/login').then(
      (r) => r.url,
      (err: unknown) => {
        if (err instanceof BerthError && err.code === 'not_found') return undefined;
        throw err;
      },
    );
    if (!bool(p, 'no-demo')) {
      const repo = demoRepo(berthHome());
      const envs = await client.listEnvs();
      if (!envs.some((e) => e.name === 'demo')) {
        const t0 = Date.now();
        await client.createEnv({ name: 'demo', repo, agent: 'demo-agent', task: 'show berth' });
        process.stderr.write(`berth: created environment demo from ${repo} in ${Date.now() - t0} ms\n`);
      }
      const r = await client.exec('demo', { argv: ['npm', 'test', '--silent'] });
      process.stderr.write(`berth: \`npm test\` in demo exited ${r.exitCode} (agent round trip ${r.timing.transportMs} ms)\n`);
    }
  } catch (err) {
    await node.stop();
    throw err;
  }
  const info = await client.node();
  const tcp = node.tcp;
  const berth = 'bin/berth';
  process.stdout.write(
    [
      '',
      `berth node ${info.node} is up on ${localSocketPath()}${tcp ? ` and ${tcp.tls ? 'tls' : 'tcp'}://${tcp.host}:${tcp.port}` : ''}.`,
      ...(dashboardUrl ? [`The dashboard (a one-time login link; \`${berth} dashboard\` prints another): ${dashboardUrl}`] : []),
      'Try, in another terminal:',
      `  ${berth} ls`,
      `  ${berth} exec demo -- npm test`,
      `  ${berth} describe demo --json`,
      `  ${berth} new mine --repo . --agent me --task explore`,
      `  ${berth} rm demo`,
      'Ctrl-C stops the node; environments keep running and are picked up again by the next start.',
      '',
    ].join('\n'),
  );
  if (bool(p, 'detach')) {
    await node.stop();
    return 0;
  }
  const ended = await Promise.race([stopped.then(() => null), node.exited]);
  if (ended !== null) throw new BerthError('internal', `the node stopped by itself (exit ${ended})`, 'see the lines above');
  const code = await node.stop();
  return code === 0 ? 0 : code;
}

/** The demo repository ships as plain files; it becomes a git repository on first use. */
function demoRepo(home: string): string {
  const src = resolve(fileURLToPath(import.meta.url), '../../../../../examples/demo-app');
  if (!existsSync(src)) throw new BerthError('internal', `the demo app is missing at ${src}`);
  const dst = join(home, 'demo-app');
  if (!existsSync(join(dst, '.git'))) {
    mkdirSync(dst, { recursive: true });
    cpSync(src, dst, { recursive: true });
    const g = (...args: string[]): void => {
      execFileSync('git', ['-C', dst, '-c', 'user.name=berth', '-c', 'user.email=berth@localhost', ...args], { stdio: 'ignore' });
    };
    g('init', '-q', '-b', 'main');
    g('add', '-A');
    g('commit', '-q', '-m', 'demo app');
  }
  return dst;
}

/** The first SIGINT or SIGTERM; the node (a child) stops on it too, and is waited for. */
function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => resolve());
  });
}
