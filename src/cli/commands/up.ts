// `berth up`: the node in the foreground, with a demo environment and what to try next.
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { NodeClient } from '../../client/client.js';
import { BerthError } from '../../core/errors.js';
import { startDaemon } from '../../node/daemon.js';
import { mcpHttpHandler } from '../../mcp/http.js';
import { Dashboard, dashboardAddress } from '../../dashboard/index.js';

/**
 * The surfaces the daemon serves beside its API: MCP over streamable HTTP at /mcp, and the
 * dashboard (its own listener on loopback, and /dashboard/login on the API).
 */
function surfaces(dashboardFlag: string | undefined) {
  const where = dashboardAddress(dashboardFlag);
  const log = (l: string): void => void process.stderr.write(l + '\n');
  const dashboard = where ? new Dashboard({ ...where, log }) : undefined;
  return {
    dashboard,
    extra: (socketPath: string) => ({ '/mcp': mcpHttpHandler(socketPath), ...dashboard?.handlers(socketPath) }),
    start: async (home: string): Promise<void> => dashboard?.start(home),
    close: (): void => dashboard?.close(),
  };
}
import { bool, flag, parseArgs } from '../args.js';
import { ensureToolchain } from './toolchain.js';

export async function cmdDaemon(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: [], value: ['listen', 'tls-cert', 'tls-key', 'dashboard'] });
  if (!!flag(p, 'tls-cert') !== !!flag(p, 'tls-key')) throw new BerthError('usage', '--tls-cert and --tls-key go together');
  const s = surfaces(flag(p, 'dashboard'));
  const d = await startDaemon({ listen: flag(p, 'listen'), tlsCert: flag(p, 'tls-cert'), tlsKey: flag(p, 'tls-key'), extra: s.extra });
  try {
    await s.start(d.config.home);
  } catch (err) {
    await d.close();
    throw err;
  }
  await waitForSignal();
  s.close();
  await d.close();
  return 0;
}

export async function cmdUp(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['no-demo', 'detach'], value: ['listen', 'dashboard'] });
  await ensureToolchain();
  const s = surfaces(flag(p, 'dashboard'));
  const d = await startDaemon({ listen: flag(p, 'listen'), extra: s.extra });
  const client = new NodeClient({ socketPath: d.socketPath });
  let dashboardUrl: string | undefined;
  try {
    await s.start(d.config.home);
    if (s.dashboard?.url) dashboardUrl = (await client.request<{ url: string }>('POST', '/dashboard/login')).url;
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
    s.close();
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
      ...(dashboardUrl ? [`The dashboard (a one-time login link; \`${'bin/berth'} dashboard\` prints another): ${dashboardUrl}`] : []),
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
    s.close();
    await d.close();
    return 0;
  }
  await waitForSignal();
  s.close();
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
