// Reaching the local node, starting a daemon when none is running. The daemon is the node's
// own entry point (src/node/main.ts), run as a process of its own: nothing here loads it.
import type { ChildProcess } from 'node:child_process';
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

/** The node's entry point, beside this package's SDK in dist. */
export function nodeEntry(): string {
  return resolve(fileURLToPath(import.meta.url), '..', '..', 'node', 'main.js');
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
  // Loaded here, not at the top: most commands find a node running and never start one.
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [nodeEntry(), 'daemon'], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, BERTH_NODE_PARENT: '' }, // a daemon of its own, not tied to this process
  });
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

export interface NodeOptions {
  /** TCP address (HOST:PORT) to listen on besides the unix socket. */
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** The dashboard's address (127.0.0.1:PORT), or `off`; by default the node's own default. */
  dashboard?: string;
  /** Each line the node writes on stderr (its log); by default, this process's stderr. */
  log?: (line: string) => void;
}

export interface RunningNode {
  pid: number;
  /** A client on the node's unix socket. */
  client: NodeClient;
  /** The TCP address it also listens on, once it said so. */
  tcp?: { host: string; port: number; tls: boolean };
  /** Resolves with the node's exit code when it ends. */
  exited: Promise<number>;
  /** Stops the node (SIGTERM) and waits for it. */
  stop(): Promise<number>;
}

/**
 * Runs the local node in the foreground, as a child of this process that ends when this process
 * does (`berth up`). Resolves once it answers on its socket; a node that fails to start is its
 * own one-line error, with its code.
 */
export async function runNode(opts: NodeOptions = {}): Promise<RunningNode> {
  const args = [nodeEntry(), 'daemon'];
  if (opts.listen) args.push('--listen', opts.listen);
  if (opts.tlsCert) args.push('--tls-cert', opts.tlsCert);
  if (opts.tlsKey) args.push('--tls-key', opts.tlsKey);
  if (opts.dashboard) args.push('--dashboard', opts.dashboard);
  const { spawn } = await import('node:child_process');
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: { ...process.env, BERTH_NODE_PARENT: String(process.pid) },
  });
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const running: { tcp?: RunningNode['tcp'] } = {};
  // While the node starts, its latest line is held back: when it exits instead of answering,
  // that line is its error, said once (as the error of this call), not twice.
  const st = { held: null as string | null, starting: true, exit: null as number | null, listening: false };
  let buf = '';
  child.stderr!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const m = /also listening on (tcp|https):\/\/(\[[^\]]+\]|[^:\s]+):(\d+)/.exec(line);
      if (m) running.tcp = { host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]), tls: m[1] === 'https' };
      // This node's own word that it serves (another node answering on the socket is not it).
      if (/^berth: node \S+ listening on /.test(line)) st.listening = true;
      if (!st.starting) log(line);
      else {
        if (st.held !== null) log(st.held);
        st.held = line;
      }
    }
  });
  const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  void exited.then((c) => (st.exit = c));
  const client = new NodeClient({ socketPath: localSocket() });
  for (let i = 0; ; i++) {
    if (st.exit !== null) {
      client.close();
      const exit = st.exit;
      const code = (Object.keys(ERROR_TABLE) as ErrorCode[]).find((k) => ERROR_TABLE[k].exit === exit);
      const last = st.held;
      if (code && last?.startsWith('berth: ')) throw typedError(code, last.slice('berth: '.length));
      if (last !== null) log(last);
      throw typedError('daemon_unreachable', `the node exited (${exit}) before it answered`);
    }
    if (i > 1200) {
      child.kill('SIGTERM');
      client.close();
      throw typedError('daemon_unreachable', 'the node did not answer on its socket within a minute');
    }
    if (st.listening && existsSync(localSocket())) {
      try {
        await client.node(AbortSignal.timeout(2000));
        st.starting = false;
        if (st.held !== null) log(st.held);
        st.held = null;
        break;
      } catch {
        /* not yet */
      }
    }
    await sleep(50);
  }
  return {
    pid: child.pid!,
    client,
    get tcp() {
      return running.tcp;
    },
    exited,
    stop: async () => {
      client.close();
      if (st.exit === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
