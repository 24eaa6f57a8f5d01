// The node daemon: finds the engine, opens the state, reconciles, and serves the API.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { NodeInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { discoverEngine } from '../engine/discovery.js';
import { EnvManager } from '../env/manager.js';
import { EventBus } from '../env/event-bus.js';
import { loadNodeConfig, type NodeConfig } from '../env/node-config.js';
import { defaultToolchainDigest } from '../toolchain/base-image.js';
import { createApiServer, type ExtraHandler } from './server.js';
import { TokenStore } from './tokens.js';
import { NodeSecrets } from '../env/secrets/node-secrets.js';
import { BlobStore } from '../workspace/blob-store.js';
import { sweepViews } from '../workspace/confined-tree.js';
import { releaseStorage, setupStorage } from '../workspace/storage.js';
import { PtySessions } from '../env/pty-sessions.js';
import { PoolKeeper } from '../env/pools.js';
import { Reaper } from '../env/reaper.js';
import { StateDb } from '../state/state-db.js';
import { VERSION } from '../core/version.js';

/** flock(1)'s exit code when another daemon holds the lock (EX_TEMPFAIL). */
const LOCK_HELD = 75;

export interface DaemonOptions {
  /** TCP address (host:port) to listen on besides the unix socket. */
  listen?: string;
  /** TLS for the TCP listener: a certificate and its key (PEM files). */
  tlsCert?: string;
  tlsKey?: string;
  log?: (line: string) => void;
  /**
   * Handlers of their own for some paths (the MCP endpoint at /mcp), made once the unix socket's
   * path is known: the composition root (the CLI) supplies them, so the daemon imports no surface.
   */
  extra?: (socketPath: string) => Record<string, ExtraHandler>;
}

export interface RunningDaemon {
  socketPath: string;
  tcp?: { host: string; port: number; token: string };
  manager: EnvManager;
  config: NodeConfig;
  close(): Promise<void>;
}

export function socketPathFor(home: string): string {
  return join(home, 'berth.sock');
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<RunningDaemon> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const config = loadNodeConfig();
  // What setting up the storage says is told once the engine answers: a node that cannot start
  // says why in one line.
  const early: string[] = [];
  const storage = await setupStorage(config.home, process.env, (l) => early.push(l));
  config.workRoot = storage.workRoot;
  config.cow = storage.kind === 'btrfs';
  config.storage = { kind: storage.kind, reason: storage.reason };
  mkdirSync(join(config.workRoot, 'envs'), { recursive: true, mode: 0o700 });
  const socketPath = socketPathFor(config.home);
  // One daemon per home: the lock is taken before reconciling, so a second daemon can never
  // mistake the first one's work in progress for a crash's leftovers.
  const releaseLock = takeLock(join(config.home, 'daemon.lock'), socketPath);
  // Last out before the lock: a loop file this node mounted, once it holds no environment.
  const cleanups: Array<() => void | Promise<void>> = [releaseLock, () => releaseStorage(storage, config.home, log)];
  const unwind = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c();
  };
  try {
    return await start(config, socketPath, opts, log, cleanups, early);
  } catch (err) {
    await unwind();
    throw err;
  }
}

async function start(
  config: NodeConfig,
  socketPath: string,
  opts: DaemonOptions,
  log: (line: string) => void,
  cleanups: Array<() => void | Promise<void>>,
  early: string[],
): Promise<RunningDaemon> {
  if (existsSync(socketPath)) rmSync(socketPath, { force: true });
  const { engine, how } = await discoverEngine({ log, logDir: config.home });
  cleanups.push(() => engine.close());
  const v = await engine.version();
  for (const l of early) log(l);
  log(`berth: engine ${v.name} ${v.version} at ${engine.endpoint} (${how})`);
  const db = new StateDb(join(config.home, 'state.db'));
  cleanups.push(() => db.close());
  const store = new BlobStore(join(config.home, 'store'));
  store.sweepTmp();
  sweepViews();
  const events = new EventBus(db);
  const secrets = await NodeSecrets.start({
    db,
    home: config.home,
    nodeId: config.nodeId,
    caBundle: config.caBundle,
    resolveEnv: (env) => (db.envById(env) ?? db.envByName(env))?.id,
    log,
  });
  cleanups.push(() => secrets.close());
  const manager = new EnvManager({ config, engine, engineName: v.name, db, store, events, log, secrets });
  cleanups.push(() => manager.close());
  const r = await manager.reconcile();
  if (r.removedHalfMade || r.removedOrphans || r.vanished) {
    log(
      `berth: reconciled: removed ${r.removedHalfMade} half-made environment(s) and ${r.removedOrphans} orphaned container(s); ${r.vanished} environment(s) vanished`,
    );
  }
  const nodeInfo = async (): Promise<NodeInfo> => ({
    node: config.nodeId,
    version: VERSION,
    engine: { name: v.name, endpoint: engine.endpoint, version: v.version },
    defaultToolchain: defaultToolchainDigest(),
    storage: { ...config.storage, root: config.workRoot },
  });

  const servers: Server[] = [];
  const closeServers = async (): Promise<void> => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
            s.emit('berth:shutdown'); // ends upgraded (WebSocket) connections too
          }),
      ),
    );
  };
  cleanups.push(closeServers);
  const ptys = new PtySessions(manager);
  const pools = new PoolKeeper(manager);
  const reaper = new Reaper(manager);
  cleanups.push(() => {
    pools.stop();
    reaper.stop();
  });
  // The node's own token reaches everything; it is made on first use, kept 0600 in the home.
  const nodeToken = loadToken(config.home);
  const tokens = new TokenStore(db, nodeToken);
  const extra = opts.extra?.(socketPath);
  const parts = { manager, ptys, pools, tokens, secrets, nodeInfo, log, extra };
  const unix = createApiServer(parts, true);
  servers.push(unix);
  await listen(unix, () => unix.listen(socketPath));
  chmodSync(socketPath, 0o600);
  cleanups.push(() => rmSync(socketPath, { force: true }));
  log(`berth: node ${config.nodeId} listening on ${socketPath}`);
  pools.start();
  reaper.start();

  let tcp: RunningDaemon['tcp'];
  if (opts.listen) {
    const token = nodeToken;
    const [host, portText] = splitHostPort(opts.listen);
    const tls = opts.tlsCert && opts.tlsKey ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) } : undefined;
    const srv = createApiServer(parts, false, tls);
    servers.push(srv);
    await listen(srv, () => srv.listen(Number(portText), host));
    const addr = srv.address();
    const port = typeof addr === 'object' && addr ? addr.port : Number(portText);
    tcp = { host, port, token };
    log(`berth: also listening on ${tls ? 'https' : 'tcp'}://${host}:${port} (bearer token in ${join(config.home, 'token')})`);
  }

  return {
    socketPath,
    tcp,
    manager,
    config,
    close: async () => {
      for (const c of cleanups.reverse()) await c();
    },
  };
}

function listen(server: Server, go: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new BerthError(
              'already_exists',
              `the address is already in use (${err.message})`,
              'stop what listens there, or pick another --listen address',
            )
          : err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL'
            ? new BerthError('usage', `cannot listen there (${err.code})`, 'pick another --listen address')
            : err,
      );
    });
    go();
    server.once('listening', () => resolve());
  });
}

/**
 * One daemon per home: an exclusive flock(2) on daemon.lock, held on a descriptor the daemon
 * keeps open for its life. The kernel drops the lock when that descriptor closes, that is when
 * the process dies, however it dies. So nothing can pass for a live daemon: not a killed one's
 * zombie (dead, not yet reaped, holding no files; kill(pid, 0) still succeeds on it), not a
 * recycled pid, and two daemons starting at once cannot both win. Node has no flock(), so
 * flock(1) takes it on the same open file, passed as its fd 3, and exits: the lock belongs to
 * the open file, and stays with the daemon's descriptor (opened close-on-exec, so no child of
 * the daemon holds it on). The file holds the pid, for the message.
 */
function takeLock(path: string, socketPath: string): () => void {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  const r = spawnSync('flock', ['--nonblock', '--conflict-exit-code', String(LOCK_HELD), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.status !== 0) {
    closeSync(fd);
    if (r.status === LOCK_HELD) {
      const pid = readFileSync(path, 'utf8').trim() || '?';
      throw new BerthError(
        'already_exists',
        `a berth daemon (pid ${pid}) is already running on ${socketPath}`,
        'stop it first, or set BERTH_HOME for a second node',
      );
    }
    const why = r.error?.message ?? (r.stderr.trim().split('\n')[0] || `flock exited ${r.status ?? r.signal}`);
    throw new BerthError('internal', `could not take the daemon lock ${path}: ${why}`, 'flock(1) comes with util-linux');
  }
  ftruncateSync(fd, 0);
  writeSync(fd, String(process.pid), 0);
  // The file stays: removing it while locked would let a daemon that opened it just before
  // lock the removed file while a third locks a new one.
  return () => {
    ftruncateSync(fd, 0);
    closeSync(fd);
  };
}

function loadToken(home: string): string {
  if (process.env.BERTH_TOKEN) return process.env.BERTH_TOKEN;
  const path = join(home, 'token');
  if (!existsSync(path)) writeFileSync(path, randomBytes(24).toString('base64url'), { mode: 0o600 });
  return readFileSync(path, 'utf8').trim();
}

function splitHostPort(addr: string): [string, string] {
  const m = /^(?:tcp:\/\/)?(\[[^\]]+\]|[^:]+):(\d+)$/.exec(addr);
  if (!m) throw new BerthError('usage', `invalid listen address ${addr}`, 'use HOST:PORT, for example 127.0.0.1:7700');
  return [m[1]!.replace(/^\[|\]$/g, ''), m[2]!];
}
