#!/usr/bin/env node
// The node's own entry point: `berth daemon` (bin/berth sends it here, and so does the SDK when
// it starts the local node). It runs the daemon in this process, with the surfaces of
// src/node/surfaces.ts, until SIGINT or SIGTERM; errors are one line with their exit code, as
// the CLI's are.
import { asBerthError, BerthError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { startDaemon } from './daemon.js';
import { surfaces } from './surfaces.js';

const USAGE = 'usage: berth daemon [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--dashboard 127.0.0.1:PORT|off]';

/** --listen, --tls-cert, --tls-key and --dashboard, as `--flag value` or `--flag=value`. */
type Flags = Partial<Record<'listen' | 'tls-cert' | 'tls-key' | 'dashboard', string>>;

function parseFlags(argv: string[]): Flags {
  const out: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--(listen|tls-cert|tls-key|dashboard)(?:=(.*))?$/s.exec(a);
    if (!m) {
      if (a.startsWith('--')) throw new BerthError('usage', `unknown option ${a.split('=')[0]}`, USAGE);
      throw new BerthError('usage', `unexpected argument ${JSON.stringify(a)}`, USAGE);
    }
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new BerthError('usage', `--${m[1]} needs a value`);
    out[m[1] as keyof Flags] = v;
  }
  return out;
}

/** Resolves on the first SIGINT or SIGTERM; later ones are ignored while the node stops. */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => resolve(s));
  });
}

/**
 * With BERTH_NODE_PARENT set (by `berth up`, which runs the node for as long as it runs), the
 * node stops when that process is gone, however it ended.
 */
function parentGone(): Promise<void> | null {
  const parent = Number(process.env.BERTH_NODE_PARENT);
  if (!Number.isInteger(parent) || parent <= 1) return null;
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(t);
      resolve();
    }, 500);
    t.unref();
  });
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'version' || cmd === '--version') {
    process.stdout.write(VERSION + '\n');
    return 0;
  }
  if (cmd !== undefined && cmd !== 'daemon') throw new BerthError('usage', `the node runs \`daemon\`, not ${JSON.stringify(cmd)}`, USAGE);
  const f = parseFlags(rest);
  if (!!f['tls-cert'] !== !!f['tls-key']) throw new BerthError('usage', '--tls-cert and --tls-key go together');
  const stop = stopSignal();
  const s = surfaces(f.dashboard, (l) => void process.stderr.write(l + '\n'));
  const d = await startDaemon({ listen: f.listen, tlsCert: f['tls-cert'], tlsKey: f['tls-key'], extra: s.extra });
  try {
    await s.start(d.config.home);
  } catch (err) {
    await d.close();
    throw err;
  }
  await Promise.race([stop, parentGone() ?? stop]);
  s.close();
  await d.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = asBerthError(err);
    process.stderr.write(`berth: ${e.oneLine()}\n`);
    if (e.code === 'internal' && process.env.BERTH_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = e.exitCode;
  },
);
