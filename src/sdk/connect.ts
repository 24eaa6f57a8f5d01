// Reaching the local node, starting a daemon when none is running.
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, ERROR_TABLE, typedError, type ErrorCode } from '../core/errors.js';
import { NodeClient } from '../client/client.js';
import { berthHome, localSocketPath } from '../core/home.js';

export function localSocket(): string {
  return localSocketPath();
}

export async function connectLocal(opts: { autostart: boolean; quiet?: boolean }): Promise<NodeClient> {
  const socketPath = localSocket();
  const client = new NodeClient({ socketPath });
  try {
    await client.node(AbortSignal.timeout(5000));
    return client;
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== 'daemon_unreachable') throw err;
    if (!opts.autostart || process.env.BERTH_NO_AUTOSTART === '1') {
      throw typedError('daemon_unreachable', `no berth daemon is running (${socketPath})`, 'start one with `berth daemon` or `berth up`');
    }
  }
  const home = berthHome();
  mkdirSync(home, { recursive: true });
  const logPath = join(home, 'daemon.log');
  const out = openSync(logPath, 'a');
  const bin = resolve(fileURLToPath(import.meta.url), '..', '..', 'cli', 'main.js');
  // Loaded here, not at the top: most commands find a node running and never start one.
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [bin, 'daemon'], { detached: true, stdio: ['ignore', out, out], env: process.env });
  child.unref();
  if (!opts.quiet) process.stderr.write(`berth: no daemon was running; started one (pid ${child.pid}, log ${logPath})\n`);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  for (let i = 0; i < 600; i++) {
    if (exited !== null) break;
    if (existsSync(socketPath)) {
      try {
        await client.node(AbortSignal.timeout(2000));
        return client;
      } catch {
        /* not yet */
      }
    }
    await sleep(50);
  }
  if (exited !== null) {
    // Pass the daemon's own one-line error on, with its code (an engine that is down, say).
    const last =
      readFileSync(logPath, 'utf8')
        .trim()
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('berth: ')) ?? '';
    const code = (Object.keys(ERROR_TABLE) as ErrorCode[]).find((k) => ERROR_TABLE[k].exit === exited);
    if (code && last) throw typedError(code, `could not start a daemon: ${last.slice('berth: '.length)}`);
  }
  throw typedError('daemon_unreachable', `the daemon did not start`, `see ${logPath}`);
}
