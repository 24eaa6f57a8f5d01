// Finds the container engine by trying strategies in order:
//   1. BERTH_ENGINE: "podman", "docker", or an endpoint (unix:///..., tcp://...)
//   2. DOCKER_HOST
//   3. the usual sockets: Podman's rootful and rootless sockets, then Docker's
//   4. Podman installed but its service not running: start `podman system service`, and say so.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError } from '../core/errors.js';
import { DockerApiEngine } from './docker-api-engine.js';
import type { Engine } from './engine.js';

export const PODMAN_SOCKET = '/run/podman/podman.sock';
export const DOCKER_SOCKET = '/var/run/docker.sock';

/** Podman's rootful socket: BERTH_PODMAN_SOCKET moves it (a private Podman, as the tests run). */
export function podmanSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_PODMAN_SOCKET?.trim() || PODMAN_SOCKET;
}

/** Docker's socket: BERTH_DOCKER_SOCKET moves it (a private dockerd, as the tests run). */
export function dockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_DOCKER_SOCKET?.trim() || DOCKER_SOCKET;
}

export interface DiscoveryOptions {
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  /** Where the podman service writes its log when berth starts it. */
  logDir?: string;
  signal?: AbortSignal;
}

export interface Discovered {
  engine: Engine;
  how: string;
}

export async function discoverEngine(opts: DiscoveryOptions = {}): Promise<Discovered> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? (() => {});
  const explicit = env.BERTH_ENGINE?.trim();

  if (explicit === 'podman') return usePodman(opts, log, 'BERTH_ENGINE=podman');
  if (explicit === 'docker') {
    return mustAnswer(`unix://${dockerSocket(env)}`, 'BERTH_ENGINE=docker', 'start dockerd (scripts/start-docker.sh does it)');
  }
  if (explicit) return mustAnswer(normalizeEndpoint(explicit), 'BERTH_ENGINE', 'check that the engine is running at that address');
  if (env.DOCKER_HOST)
    return mustAnswer(normalizeEndpoint(env.DOCKER_HOST), 'DOCKER_HOST', 'check that the engine is running at that address');

  const candidates = [podmanSocket(env)];
  if (env.XDG_RUNTIME_DIR) candidates.push(join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock'));
  candidates.push(dockerSocket(env));
  for (const sock of candidates) {
    if (!existsSync(sock)) continue;
    const engine = new DockerApiEngine(`unix://${sock}`);
    if (await answers(engine)) return { engine, how: `found ${sock}` };
    engine.close();
  }
  if (hasPodman()) return usePodman(opts, log, 'podman is installed');
  throw new BerthError(
    'engine_unavailable',
    'no container engine found (tried BERTH_ENGINE, DOCKER_HOST, ' + candidates.join(', ') + ')',
    'install one with scripts/setup.sh, or set BERTH_ENGINE',
  );
}

function normalizeEndpoint(value: string): string {
  if (value.startsWith('/')) return `unix://${value}`;
  return value;
}

async function mustAnswer(endpoint: string, how: string, hint: string): Promise<Discovered> {
  const engine = new DockerApiEngine(endpoint);
  if (await answers(engine)) return { engine, how };
  engine.close();
  throw new BerthError('engine_unavailable', `container engine at ${endpoint} (${how}) is not answering`, hint);
}

async function answers(engine: Engine): Promise<boolean> {
  try {
    await engine.version(AbortSignal.timeout(3000));
    return true;
  } catch {
    return false;
  }
}

function hasPodman(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'podman')));
}

async function usePodman(opts: DiscoveryOptions, log: (l: string) => void, how: string): Promise<Discovered> {
  const socket = podmanSocket(opts.env ?? process.env);
  const endpoint = `unix://${socket}`;
  const engine = new DockerApiEngine(endpoint);
  if (await answers(engine)) return { engine, how };
  if (!hasPodman()) {
    throw new BerthError('engine_unavailable', 'podman is not installed', 'run scripts/setup.sh, or set BERTH_ENGINE to another engine');
  }
  log(`berth: podman's API socket ${socket} is not answering; starting \`podman system service\``);
  mkdirSync(dirname(socket), { recursive: true });
  const logDir = opts.logDir ?? '/tmp';
  mkdirSync(logDir, { recursive: true });
  const out = openSync(join(logDir, 'podman-service.log'), 'a');
  const child = spawn('podman', ['system', 'service', '--time=0', endpoint], {
    detached: true,
    stdio: ['ignore', out, out],
    env: opts.env ?? process.env,
  });
  child.unref();
  for (let i = 0; i < 200; i++) {
    if (opts.signal?.aborted) break;
    if (existsSync(socket) && (await answers(engine))) {
      log(`berth: podman system service is running at ${socket} (pid ${child.pid}, log ${join(logDir, 'podman-service.log')})`);
      return { engine, how: `${how}; started podman system service` };
    }
    await sleep(50);
  }
  engine.close();
  throw new BerthError(
    'engine_unavailable',
    'podman system service did not start within 10 s',
    `see ${join(logDir, 'podman-service.log')}`,
  );
}
