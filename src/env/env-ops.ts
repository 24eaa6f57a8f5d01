// Operations on a running environment through its agent: services, logs, describe, batch.
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { BatchRequest, BatchResult, BerthFile, ServiceInfo, ServiceStartRequest } from '../core/api.js';
import { BerthFile as BerthFileSchema } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { parseReadiness } from '../core/readiness.js';
import type { AgentOp, AgentResponse, ServiceSpec } from '../agent/protocol.js';
import { AgentGoneError, type AgentStream, type StreamHandlers } from '../agent/client.js';
import { agentError } from './exec-service.js';
import type { EnvManager } from './manager.js';

/** One request to the environment's agent; agent-side errors become BerthErrors. */
export async function ask(manager: EnvManager, name: string, op: AgentOp): Promise<AgentResponse> {
  const { row, conn } = await manager.agentFor(name);
  try {
    const res = await conn.request(op);
    if (!res.ok) throw agentError(res);
    return res;
  } catch (err) {
    if (err instanceof AgentGoneError) {
      throw new BerthError(
        'not_running',
        `environment ${row.name} went away during the request`,
        `check it with \`berth describe ${row.name}\``,
      );
    }
    throw err;
  }
}

export async function openStream(manager: EnvManager, name: string, op: AgentOp, handlers: StreamHandlers): Promise<AgentStream> {
  const { conn } = await manager.agentFor(name);
  return conn.open(op, handlers);
}

export async function readBerthFile(manager: EnvManager, name: string): Promise<BerthFile | null> {
  let res: AgentResponse;
  try {
    res = await ask(manager, name, { op: 'readFile', path: '/workspace/berth.json', maxBytes: 1 << 20 });
  } catch (err) {
    if (err instanceof BerthError && err.code === 'not_found') return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(res.data ?? '', 'base64').toString('utf8'));
  } catch {
    throw new BerthError('invalid_request', 'berth.json is not valid JSON', 'fix the file at the repository root');
  }
  const parsed = BerthFileSchema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new BerthError(
      'invalid_request',
      `berth.json: ${i?.path.join('.') ?? ''}: ${i?.message ?? 'invalid'}`,
      'see docs/services.md for the format',
    );
  }
  return parsed.data;
}

/** A service spec from the request, filling gaps from the repository's berth.json. */
export async function serviceSpec(manager: EnvManager, envName: string, req: ServiceStartRequest): Promise<ServiceSpec> {
  let spec: ServiceSpec | undefined = req.argv
    ? {
        name: req.name,
        argv: req.argv,
        cwd: req.cwd,
        env: req.env,
        ready: req.ready,
        readyTimeoutMs: req.readyTimeoutMs,
        restart: req.restart,
      }
    : undefined;
  if (!spec) {
    const file = await readBerthFile(manager, envName);
    const declared = file?.services?.[req.name];
    if (!declared) {
      throw new BerthError(
        'not_found',
        `service ${req.name} is not declared in berth.json`,
        'give its command after --, or declare it in berth.json',
      );
    }
    spec = fromDeclared(req.name, declared);
    if (req.ready) spec.ready = req.ready;
    if (req.readyTimeoutMs) spec.readyTimeoutMs = req.readyTimeoutMs;
    if (req.restart) spec.restart = req.restart;
  }
  return spec;
}

export function fromDeclared(name: string, d: NonNullable<BerthFile['services']>[string]): ServiceSpec {
  return {
    name,
    argv: Array.isArray(d.command) ? d.command : ['/bin/sh', '-c', d.command],
    cwd: d.cwd,
    env: d.env,
    ready: d.ready ? parseReadiness(d.ready) : undefined,
    readyTimeoutMs: d.readyTimeout ? Math.round(d.readyTimeout * 1000) : undefined,
    restart: d.restart,
  };
}

export async function startService(manager: EnvManager, envName: string, req: ServiceStartRequest): Promise<ServiceInfo> {
  const spec = await serviceSpec(manager, envName, req);
  const res = await ask(manager, envName, { op: 'service.start', spec, wait: req.wait !== false });
  return res.service as ServiceInfo;
}

export async function stopService(manager: EnvManager, envName: string, service: string): Promise<ServiceInfo> {
  return (await ask(manager, envName, { op: 'service.stop', name: service })).service as ServiceInfo;
}

export async function listServices(manager: EnvManager, envName: string): Promise<ServiceInfo[]> {
  return (await ask(manager, envName, { op: 'service.list' })).services as ServiceInfo[];
}

/** Services a repository marks `"autostart": true` start with the environment. */
export async function autostartServices(manager: EnvManager, envName: string): Promise<string[]> {
  const file = await readBerthFile(manager, envName).catch(() => null);
  const started: string[] = [];
  for (const [name, d] of Object.entries(file?.services ?? {})) {
    if (!d.autostart) continue;
    await ask(manager, envName, { op: 'service.start', spec: fromDeclared(name, d), wait: false });
    started.push(name);
  }
  return started;
}

export async function describeEnv(manager: EnvManager, name: string): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const info = manager.get(name);
  const where = manager.placement(name);
  if (info.state !== 'running') {
    return { ...info, placement: where, live: null, latency: manager.stats.summary(info.id), describeMs: round(performance.now() - t0) };
  }
  const res = await ask(manager, name, { op: 'describe' });
  return {
    ...info,
    placement: where,
    ...res.describe,
    latency: manager.stats.summary(info.id),
    describeMs: round(performance.now() - t0),
  };
}

/** The environment's cgroup counters now; nulls when it is not running (nothing to ask). */
export async function envStats(manager: EnvManager, name: string): Promise<Record<string, unknown>> {
  const info = manager.get(name);
  const at = new Date().toISOString();
  if (info.state !== 'running') {
    return {
      at,
      state: info.state,
      memory: { limitBytes: null, usedBytes: null },
      pids: { limit: null, current: null },
      cpu: { limitCpus: null, usageSeconds: null },
    };
  }
  const res = await ask(manager, name, { op: 'stats' });
  return { ...res.stats, at, state: info.state };
}

export async function runBatch(manager: EnvManager, name: string, req: BatchRequest): Promise<BatchResult> {
  const t0 = performance.now();
  const { row, conn } = await manager.agentFor(name);
  const tAsk = performance.now();
  const res = await conn.request({ op: 'batch', steps: req.steps, stopOnError: req.stopOnError }).catch((err: unknown) => {
    if (err instanceof AgentGoneError) throw new BerthError('not_running', `environment ${row.name} went away during the batch`);
    throw err;
  });
  if (!res.ok || !res.batch) throw agentError(res);
  const total = performance.now() - tAsk;
  const inside = res.batch.reduce((n, s) => n + s.spawnMs + s.runMs, 0);
  const steps = res.batch.map((s, i) => ({
    argv: req.steps[i]?.argv ?? [],
    exitCode: s.timedOut ? 124 : s.exitCode,
    signal: s.signal,
    timedOut: s.timedOut,
    stdout: s.stdout,
    stderr: s.stderr,
    truncated: s.truncated,
    ...(s.error ? { error: s.error } : {}),
    timing: { spawnMs: round(s.spawnMs), runMs: round(s.runMs) },
  }));
  for (const s of res.batch) {
    manager.stats.record(row.id, { queueMs: 0, transportMs: 0, spawnMs: round(s.spawnMs), runMs: round(s.runMs) });
  }
  const failed = steps.find((s) => s.exitCode !== 0);
  return {
    steps,
    completed: steps.length,
    exitCode: failed?.exitCode ?? 0,
    timing: { queueMs: round(tAsk - t0), transportMs: round(Math.max(0, total - inside)) },
  };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/**
 * A tar stream unpacked by the engine into a directory of a running environment (volumes
 * included): how `enter` restores a cache it fetched beside its other work.
 */
export async function putArchive(manager: EnvManager, name: string, dir: string | null, tar: Readable): Promise<{ dir: string }> {
  if (!dir || !dir.startsWith('/') || dir.length > 4096 || dir.includes('\0') || dir.split('/').some((p) => p === '.' || p === '..'))
    throw new BerthError(
      'invalid_request',
      `the target must be an absolute directory without . or .. parts, not ${JSON.stringify(dir ?? '')}`,
    );
  const row = manager.row(name);
  if (row.state !== 'running' || !row.container_id)
    throw new BerthError('not_running', `environment ${name} is ${row.state}`, 'archives go into running environments');
  manager.busy(row.id, 1);
  try {
    // The same on every engine: a missing directory is made (Podman would, Docker would refuse).
    const made = await ask(manager, name, { op: 'exec', argv: ['mkdir', '-p', '--', dir] });
    if (made.exec?.exitCode !== 0)
      throw new BerthError('invalid_request', `cannot make the directory ${dir} in ${name}`, 'give a directory the environment can write');
    await manager.engine.putArchive(row.container_id, dir, tar);
  } finally {
    manager.busy(row.id, -1);
  }
  return { dir };
}
