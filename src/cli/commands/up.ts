// `berth up`: the node in the foreground, with a demo environment and what to try next.
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { NodeClient } from '../../client/client.js';
import { BerthError } from '../../core/errors.js';
import { startDaemon } from '../../node/daemon.js';
import { mcpHttpHandler } from '../../mcp/http.js';

/** The surfaces the daemon serves beside its API: MCP over streamable HTTP at /mcp. */
const extra = (socketPath: string) => ({ '/mcp': mcpHttpHandler(socketPath) });
import { bool, flag, parseArgs } from '../args.js';
import { ensureToolchain } from './toolchain.js';

export async function cmdDaemon(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: [], value: ['listen', 'tls-cert', 'tls-key'] });
  if (!!flag(p, 'tls-cert') !== !!flag(p, 'tls-key')) throw new BerthError('usage', '--tls-cert and --tls-key go together');
  const d = await startDaemon({ listen: flag(p, 'listen'), tlsCert: flag(p, 'tls-cert'), tlsKey: flag(p, 'tls-key'), extra });
  await waitForSignal();
  await d.close();
  return 0;
}

export async function cmdUp(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['no-demo', 'detach'], value: ['listen'] });
  await ensureToolchain();
  const d = await startDaemon({ listen: flag(p, 'listen'), extra });
  const client = new NodeClient({ socketPath: d.socketPath });
  try {
    if (!bool(p, 'no-demo')) {
      const repo = demoRepo(d.config.home);
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
    await d.close();
    throw err;
  } finally {
    client.close();
  }
  const berth = 'bin/berth';
  process.stdout.write(
    [
      '',
      `berth node ${d.config.nodeId} is up on ${d.socketPath}${d.tcp ? ` and tcp://${d.tcp.host}:${d.tcp.port}` : ''}.`,
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
    await d.close();
    return 0;
  }
  await waitForSignal();
  await d.close();
  return 0;
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

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
