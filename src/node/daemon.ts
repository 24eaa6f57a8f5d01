// The node daemon: finds the engine, opens the state, reconciles, and serves the API.
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import type { NodeInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { discoverEngine } from '../engine/discovery.js';
import { EnvManager } from '../env/manager.js';
import { loadNodeConfig, type NodeConfig } from '../env/node-config.js';
import { defaultToolchainDigest } from '../toolchain/base-image.js';
import { createApiServer } from './server.js';
import { StateDb } from '../state/state-db.js';
import { VERSION } from '../core/version.js';

export interface DaemonOptions {
  /** TCP address (host:port) to listen on besides the unix socket. */
  listen?: string;
  log?: (line: string) => void;
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
  const socketPath = socketPathFor(config.home);
  if (existsSync(socketPath)) {
    if (await pingSocket(socketPath)) {
      throw new BerthError(
        'already_exists',
        `a berth daemon is already running on ${socketPath}`,
        'stop it first, or set BERTH_HOME for a second node',
      );
    }
    rmSync(socketPath, { force: true });
  }
  const { engine, how } = await discoverEngine({ log, logDir: config.home });
  const v = await engine.version();
  log(`berth: engine ${v.name} ${v.version} at ${engine.endpoint} (${how})`);
  const db = new StateDb(join(config.home, 'state.db'));
  const manager = new EnvManager({ config, engine, engineName: v.name, db, log });
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
  });

  const servers: Server[] = [];
  const unix = createApiServer({ manager, nodeInfo, log }, false);
  await new Promise<void>((resolve, reject) => {
    unix.once('error', reject);
    unix.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  servers.push(unix);
  log(`berth: node ${config.nodeId} listening on ${socketPath}`);

  let tcp: RunningDaemon['tcp'];
  if (opts.listen) {
    const token = loadToken(config.home);
    const [host, portText] = splitHostPort(opts.listen);
    const srv = createApiServer({ manager, nodeInfo, log, token }, true);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(Number(portText), host, () => resolve());
    });
    const addr = srv.address();
    const port = typeof addr === 'object' && addr ? addr.port : Number(portText);
    servers.push(srv);
    tcp = { host, port, token };
    log(`berth: also listening on tcp://${host}:${port} (bearer token in ${join(config.home, 'token')})`);
  }

  return {
    socketPath,
    tcp,
    manager,
    config,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
      manager.close();
      db.close();
      engine.close();
      rmSync(socketPath, { force: true });
    },
  };
}

function pingSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath, path: '/v1/node', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
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
