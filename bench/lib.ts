// Shared pieces of the benchmarks: statistics, bounded timing loops, subprocesses, a cleanup
// registry that runs on success, on error and on signals, temporary git repositories, a berth
// daemon in a throwaway home, plain peer containers, the Docker Engine API over a unix
// socket, and devcontainer workspaces. Every figure a benchmark prints is measured here and now.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { NodeClient } from '../src/client/client.js';
import { LABEL } from '../src/env/manager.js';

/** The repository root (this file runs as dist/bench/lib.js). */
export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
export const BERTH = join(ROOT, 'bin', 'berth');
export const DEVCONTAINER = join(ROOT, 'node_modules', '.bin', 'devcontainer');

export type EngineName = 'podman' | 'docker';
/** `/usr/local/bin/docker` is another client that comes first on PATH here: always use this one. */
export const ENGINE_CLI: Record<EngineName, string> = { podman: 'podman', docker: '/usr/bin/docker' };
/** The engines' sockets; BERTH_PODMAN_SOCKET and BERTH_DOCKER_SOCKET move them, as for the node. */
export const ENGINE_SOCKET: Record<EngineName, string> = {
  podman: process.env.BERTH_PODMAN_SOCKET?.trim() || '/run/podman/podman.sock',
  docker: process.env.BERTH_DOCKER_SOCKET?.trim() || '/var/run/docker.sock',
};
// The docker CLI the peers run talks to the same dockerd as the node (scripts/private-engines.sh).
if (process.env.BERTH_DOCKER_SOCKET?.trim() && !process.env.DOCKER_HOST) process.env.DOCKER_HOST = `unix://${ENGINE_SOCKET.docker}`;

/** Every container a bench run makes itself carries this label with the run's id. */
export const BENCH_LABEL = 'org.berth.bench';
export const RUN_ID = `${process.pid}-${randomBytes(3).toString('hex')}`;

export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- options -----------------------------------------------------------------------------

/** `--key value` or `--key=value`; numbers where the default is a number. */
export function parseOptions<T extends Record<string, number | string>>(defaults: T, argv = process.argv.slice(2)): T {
  const out: Record<string, number | string> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    const key = a.slice(2, eq === -1 ? undefined : eq);
    const value = eq === -1 ? argv[++i] : a.slice(eq + 1);
    if (!(key in defaults) || value === undefined)
      throw new Error(`unknown option or missing value: ${a} (options: ${Object.keys(defaults).join(', ')})`);
    if (typeof defaults[key] === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${key} needs a non-negative number, not ${value}`);
      out[key] = n;
    } else out[key] = value;
  }
  return out as T;
}

export function engineList(text: string): EngineName[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of list) if (e !== 'podman' && e !== 'docker') throw new Error(`unknown engine ${e}`);
  return list as EngineName[];
}

// ---- statistics --------------------------------------------------------------------------

const round = (x: number): number => Math.round(x * 1000) / 1000;

/** Linear interpolation between closest ranks (numpy's default). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface Stats {
  n: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  mean_ms: number | null;
  min_ms: number | null;
  max_ms: number | null;
}

export function stats(samples: number[]): Stats {
  if (samples.length === 0) return { n: 0, p50_ms: null, p90_ms: null, p99_ms: null, mean_ms: null, min_ms: null, max_ms: null };
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    p50_ms: round(percentile(s, 0.5)),
    p90_ms: round(percentile(s, 0.9)),
    p99_ms: round(percentile(s, 0.99)),
    mean_ms: round(s.reduce((a, b) => a + b, 0) / s.length),
    min_ms: round(s[0]!),
    max_ms: round(s[s.length - 1]!),
  };
}

export function p50(samples: number[]): number | null {
  return samples.length
    ? round(
        percentile(
          [...samples].sort((a, b) => a - b),
          0.5,
        ),
      )
    : null;
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a != null && b != null && b > 0 ? Math.round((a / b) * 100) / 100 : null;
}

// ---- time bounds -------------------------------------------------------------------------

let deadline = Number.POSITIVE_INFINITY;

/** The whole run's budget: series started after it get nothing, and report so. */
export function setDeadline(ms: number): void {
  deadline = performance.now() + ms;
}

export function remainingMs(): number {
  return deadline - performance.now();
}

export interface Row extends Stats {
  name: string;
  warmup: number;
  /** Set when the time budget ended the series before n samples. */
  stopped_early?: string;
  /** The exact error that ended the series, if one did. */
  error?: string;
  [extra: string]: unknown;
}

/** Collects samples for one named series, bounded in count and time. */
export class Sampler {
  readonly samples: number[] = [];
  error: string | undefined;
  stoppedEarly: string | undefined;
  private readonly endAt: number;

  constructor(
    readonly name: string,
    readonly n: number,
    readonly warmup: number,
    budgetMs: number,
  ) {
    this.endAt = performance.now() + Math.max(0, Math.min(budgetMs, remainingMs()));
  }

  /** True while another sample may be taken. */
  more(): boolean {
    if (this.error !== undefined || this.samples.length >= this.n) return false;
    if (performance.now() >= this.endAt) {
      this.stoppedEarly ??= `time budget spent after ${this.samples.length} of ${this.n} samples`;
      return false;
    }
    return true;
  }

  add(ms: number): void {
    this.samples.push(ms);
  }

  fail(err: unknown): void {
    this.error ??= errorText(err);
  }

  row(extra: Record<string, unknown> = {}): Row {
    const r: Row = { name: this.name, ...stats(this.samples), warmup: this.warmup, ...extra };
    if (this.stoppedEarly) r.stopped_early = this.stoppedEarly;
    if (this.error !== undefined) r.error = this.error;
    return r;
  }
}

/** The row of a series that could not start, with the exact error. */
export function failedRow(name: string, warmup: number, err: unknown, extra: Record<string, unknown> = {}): Row {
  log(`${name}: failed: ${errorText(err)}`);
  return { name, ...stats([]), warmup, ...extra, error: errorText(err) };
}

/**
 * The fastest peer against the fastest berth row by p50, overall and per engine. Rows named
 * `berth-*` are berth's; `berth` narrows which of them count; `extra` adds per-engine fields.
 */
export function peerRatios(
  rows: Row[],
  opts: { berth?: (r: Row) => boolean; extra?: (b: Row, ok: Row[]) => Record<string, unknown> } = {},
): Record<string, unknown> {
  const ok = rows.filter((r) => r.p50_ms !== null && r.error === undefined);
  const isBerth = (r: Row): boolean => r.name.startsWith('berth-');
  const counts = (r: Row): boolean => isBerth(r) && (opts.berth?.(r) ?? true);
  const fastest = (list: Row[]): Row | undefined =>
    list.reduce<Row | undefined>((a, r) => (a && a.p50_ms! <= r.p50_ms! ? a : r), undefined);
  const peer = fastest(ok.filter((r) => !isBerth(r)));
  const berth = fastest(ok.filter(counts));
  const byEngine: Record<string, unknown> = {};
  for (const b of ok.filter(counts)) {
    const p = fastest(ok.filter((r) => !isBerth(r) && r.engine === b.engine));
    byEngine[String(b.engine)] = {
      fastest_same_engine_peer: p?.name ?? null,
      peer_p50_over_berth_p50: ratio(p?.p50_ms, b.p50_ms),
      ...opts.extra?.(b, ok),
    };
  }
  return {
    fastest_peer: peer?.name ?? null,
    fastest_berth: berth?.name ?? null,
    fastest_peer_p50_over_berth_p50: ratio(peer?.p50_ms, berth?.p50_ms),
    by_engine: byEngine,
  };
}

/** Runs one group of a benchmark; a group that cannot even start is recorded with its exact error, and the others still run. */
export function guarded(rows: Row[], name: string, extra: Record<string, unknown>, fn: () => Promise<void>): Promise<void> {
  return fn().catch((err: unknown) => void rows.push(failedRow(name, 0, err, extra)));
}

/**
 * Runs `iter` `warmup` times unmeasured, then up to `n` times measured, within `budgetMs`.
 * `iter` returns the milliseconds of the region it times. An error ends the series and is
 * recorded in the row, with the samples taken so far.
 */
export async function series(
  name: string,
  o: { n: number; warmup: number; budgetMs: number },
  iter: (measured: boolean) => Promise<number>,
): Promise<Sampler> {
  const s = new Sampler(name, o.n, o.warmup, o.budgetMs);
  log(`${name}: ${o.warmup} warm-up + up to ${o.n} runs`);
  try {
    for (let i = 0; i < o.warmup && s.more(); i++) await iter(false);
    while (s.more()) s.add(await iter(true));
  } catch (err) {
    s.fail(err);
    log(`${name}: failed: ${s.error}`);
  }
  const st = stats(s.samples);
  log(`${name}: n=${st.n} p50=${st.p50_ms} ms p90=${st.p90_ms} ms`);
  return s;
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

// ---- cleanup -----------------------------------------------------------------------------

const cleanups: Array<{ label: string; fn: () => Promise<void> | void }> = [];
const children = new Set<ChildProcess>();
/** Set once cleanup begins: nothing new is started after that. */
let stopping = false;

/** Registers a cleanup; they run last-in first-out. Returns a function that unregisters it. */
export function onCleanup(label: string, fn: () => Promise<void> | void): () => void {
  const entry = { label, fn };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i !== -1) cleanups.splice(i, 1);
  };
}

/** Runs every registered cleanup once, each bounded in time; returns the errors. */
export async function runCleanups(): Promise<string[]> {
  const errors: string[] = [];
  stopping = true;
  for (const c of children) c.kill('SIGKILL');
  while (cleanups.length) {
    const c = cleanups.pop()!;
    try {
      await Promise.race([
        Promise.resolve().then(c.fn),
        sleep(60_000, undefined, { ref: false }).then(() => {
          throw new Error('timed out after 60 s');
        }),
      ]);
    } catch (err) {
      errors.push(`${c.label}: ${errorText(err)}`);
      log(`cleanup ${c.label} failed: ${errorText(err)}`);
    }
  }
  return errors;
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Runs a benchmark: the body fills `report`; whatever happens (success, error, SIGINT,
 * SIGTERM, the hard time limit) everything registered is cleaned up, then the report is
 * printed as one JSON document on stdout.
 */
export function runBench(report: Record<string, unknown>, hardLimitMs: number, body: () => Promise<void>): void {
  let finishing = false;
  const finish = async (code: number, error?: string): Promise<void> => {
    if (finishing) return;
    finishing = true;
    if (error !== undefined) report.error = error;
    log('cleaning up');
    const errors = await runCleanups();
    report.cleanup = { ok: errors.length === 0, errors, leftover_containers: leftovers() };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    process.exit(errors.length && code === 0 ? 1 : code);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => void finish(sig === 'SIGINT' ? 130 : 143, `interrupted by ${sig}`));
  }
  setTimeout(() => void finish(124, `hard time limit of ${hardLimitMs / 1000} s reached`), hardLimitMs).unref();
  onCleanup('sweep containers labelled with this run', sweepRunContainers);
  body().then(
    () => finish(0),
    (err: unknown) => finish(1, err instanceof Error && process.env.BENCH_DEBUG ? (err.stack ?? err.message) : errorText(err)),
  );
}

// ---- subprocesses ------------------------------------------------------------------------

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Part of cleanup: allowed after cleanup has begun. */
  cleanup?: boolean;
}

export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  if (stopping && !o.cleanup) return Promise.reject(new Error(`not starting ${cmd}: the run is being cleaned up`));
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const stderr = Buffer.concat(err).toString('utf8') + (timedOut ? `\n(killed after ${o.timeoutMs ?? 60_000} ms)` : '');
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
  });
}

/** Like run, but a non-zero exit is an error that quotes the command's own output. */
export async function mustRun(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, o);
  if (r.code !== 0) {
    const detail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-8).join('\n');
    throw new Error(`\`${[cmd, ...args].join(' ')}\` exited ${r.code}: ${detail}`);
  }
  return r.stdout;
}

// ---- repositories and images -------------------------------------------------------------

/** A small real git repository in a temporary directory. */
export function makeRepo(): string {
  const path = tempDir('berth-bench-repo-');
  const g = (...args: string[]): void => {
    execFileSync('git', ['-C', path, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], { stdio: 'ignore' });
  };
  g('init', '-q', '-b', 'main');
  writeFileSync(join(path, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0' }, null, 2) + '\n');
  mkdirSync(join(path, 'src'));
  writeFileSync(join(path, 'src', 'index.js'), 'module.exports = 42;\n');
  g('add', '-A');
  g('commit', '-q', '-m', 'initial');
  return path;
}

/**
 * The default toolchain image's digest, as `berth toolchain build` prints it (cached), on a
 * node of its own that stops when it is done (scripts/toolchain-into.sh).
 */
export async function toolchainDigest(): Promise<string> {
  log('berth toolchain build (cached)');
  const out = await mustRun('bash', [join(ROOT, 'scripts', 'toolchain-into.sh')], { cwd: ROOT, timeoutMs: 600_000 });
  const digest = out
    .split('\n')
    .map((l) => l.trim())
    .reverse()
    .find((l) => /^sha256:[0-9a-f]{64}$/.test(l));
  if (!digest) throw new Error(`berth toolchain build printed no digest: ${out.trim()}`);
  return digest;
}

/** Raising a hard rlimit is denied here; ask for what berth asks for its environments. */
export function ulimitArgs(): string[] {
  const hard = (row: string, want: number): number => {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(row));
    const h = line?.slice(row.length).trim().split(/\s+/)[1];
    return h === undefined || h === 'unlimited' ? want : Math.min(want, Number(h));
  };
  const nofile = hard('Max open files', 8192);
  const nproc = hard('Max processes', 4096);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

// ---- the Docker Engine API ---------------------------------------------------------------

/** The Docker Engine API (podman's compat API speaks it too) over a unix socket. */
export class EngineApi {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  constructor(
    readonly engine: EngineName,
    // The engines berth itself was pointed at (BERTH_PODMAN_SOCKET, BERTH_DOCKER_SOCKET), else the usual sockets.
    readonly socketPath = (engine === 'podman' ? process.env.BERTH_PODMAN_SOCKET : process.env.BERTH_DOCKER_SOCKET) ||
      ENGINE_SOCKET[engine],
  ) {}

  private raw(method: string, path: string, body: unknown, agent: http.Agent | false): Promise<{ status: number; body: Buffer }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolvePromise, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          agent,
          timeout: 30_000,
          headers: payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.raw(method, path, body, this.agent);
    const text = r.body.toString('utf8');
    if (r.status >= 400) throw new Error(`${this.engine} API ${method} ${path}: HTTP ${r.status}: ${text.trim()}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * One command, as `docker exec` does it: create the exec, start it attached (the engine
   * hijacks that connection, so it gets its own) and read the multiplexed stream to its end,
   * then inspect the exit code.
   */
  async exec(container: string, argv: string[]): Promise<number> {
    const created = await this.json<{ Id: string }>('POST', `/containers/${container}/exec`, {
      AttachStdout: true,
      AttachStderr: true,
      Cmd: argv,
    });
    const started = await this.raw('POST', `/exec/${created.Id}/start`, { Detach: false, Tty: false }, false);
    if (started.status >= 400) throw new Error(`${this.engine} API exec start: HTTP ${started.status}: ${started.body.toString('utf8')}`);
    const info = await this.json<{ ExitCode: number | null; Running: boolean }>('GET', `/exec/${created.Id}/json`);
    return info.ExitCode ?? -1;
  }

  async version(): Promise<string> {
    return (await this.json<{ Version: string }>('GET', '/version')).Version;
  }

  async runningContainers(): Promise<number> {
    return (await this.json<unknown[]>('GET', '/containers/json')).length;
  }

  /** A name for the image: devcontainer and the CLIs want a reference they can print. */
  async imageTag(digest: string): Promise<string> {
    const img = await this.json<{ RepoTags?: string[] | null }>('GET', `/images/${digest}/json`);
    const tag = img.RepoTags?.[0];
    if (!tag) throw new Error(`${this.engine} has no tag for image ${digest}`);
    return tag;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---- containers this run makes -----------------------------------------------------------

function containersLabelled(engine: EngineName, label: string): string[] {
  try {
    const out = execFileSync(ENGINE_CLI[engine], ['ps', '-a', '-q', '--no-trunc', '--filter', `label=${label}`], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    return out.split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

async function removeContainers(engine: EngineName, ids: string[]): Promise<void> {
  if (ids.length) await mustRun(ENGINE_CLI[engine], ['rm', '-f', ...ids], { timeoutMs: 60_000, cleanup: true });
}

const touchedEngines = new Set<EngineName>();

async function sweepRunContainers(): Promise<void> {
  for (const e of touchedEngines) await removeContainers(e, containersLabelled(e, `${BENCH_LABEL}=${RUN_ID}`));
}

function leftovers(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of touchedEngines) out[e] = containersLabelled(e, `${BENCH_LABEL}=${RUN_ID}`).length;
  for (const [e, node] of berthNodes) out[`berth-node-${node}-on-${e}`] = containersLabelled(e, `${LABEL.node}=${node}`).length;
  return out;
}

export function labelArgs(engine: EngineName): string[] {
  touchedEngines.add(engine);
  return ['--label', `${BENCH_LABEL}=${RUN_ID}`];
}

/** A plain container of the image, idle, for exec benchmarks. Removed on cleanup. */
export async function startIdleContainer(engine: EngineName, image: string): Promise<{ id: string; remove: () => Promise<void> }> {
  const id = (
    await mustRun(ENGINE_CLI[engine], ['run', '-d', ...labelArgs(engine), ...ulimitArgs(), image, 'sleep', 'infinity'], {
      timeoutMs: 60_000,
    })
  ).trim();
  const unregister = onCleanup(`${engine} rm -f ${id.slice(0, 12)}`, () => removeContainers(engine, [id]));
  return {
    id,
    remove: async () => {
      unregister();
      await removeContainers(engine, [id]);
    },
  };
}

// ---- mounts ------------------------------------------------------------------------------

/** True when `path` is a mount point now (from /proc/self/mountinfo). */
export function isMountPoint(path: string): boolean {
  const want = resolve(path);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') === want);
}

/** Unmounts `path` if it is mounted; a busy mount is detached lazily, and that is an error. */
export async function unmount(path: string): Promise<void> {
  if (!isMountPoint(path)) return;
  const r = await run('umount', [path], { cleanup: true, timeoutMs: 60_000 });
  if (r.code === 0) return;
  const lazy = await run('umount', ['-l', path], { cleanup: true, timeoutMs: 60_000 });
  throw new Error(`umount ${path} exited ${r.code}: ${r.stderr.trim()}; umount -l then exited ${lazy.code} ${lazy.stderr.trim()}`);
}

// ---- a berth daemon ----------------------------------------------------------------------

const berthNodes: Array<[EngineName, string]> = [];

/** A berth daemon (`node bin/berth daemon`) in a throwaway BERTH_HOME, with its own cache. */
export class BerthNode {
  readonly client: NodeClient;
  private readonly unregister: () => void;
  private stopped = false;

  private constructor(
    readonly engine: EngineName,
    readonly home: string,
    readonly env: NodeJS.ProcessEnv,
    readonly proc: ChildProcess,
    readonly socketPath: string,
    readonly nodeId: string,
  ) {
    this.client = new NodeClient({ socketPath });
    this.unregister = onCleanup(`berth daemon on ${engine} (${home})`, () => this.stop());
  }

  /**
   * `listen` (HOST:PORT, port 0 for any) also serves the API over TCP: see tcpEndpoint.
   * `env` adds to the daemon's environment; with BERTH_STORAGE=btrfs the daemon mounts a
   * btrfs loop file at $BERTH_HOME/fs, which is unmounted after the daemon stops and before
   * its home is deleted.
   */
  static async start(
    engine: EngineName,
    digest: string,
    o: { listen?: string; env?: Record<string, string>; home?: string } = {},
  ): Promise<BerthNode> {
    if (stopping) throw new Error('not starting a daemon: the run is being cleaned up');
    touchedEngines.add(engine);
    // A home of the caller's (on a file system of its own, say) is the caller's to remove.
    const home = o.home ?? tempDir(`berth-bench-${engine}-`);
    // Registered after the home's removal and before the daemon's stop: it runs between them.
    if (o.env?.BERTH_STORAGE === 'btrfs') onCleanup(`umount ${join(home, 'fs')}`, () => unmount(join(home, 'fs')));
    // Its own cache, so the repository mirrors it makes go away with it; the toolchain
    // it defaults to is the one `berth toolchain build` just reported.
    const cache = join(home, 'cache');
    mkdirSync(join(cache, 'toolchains'), { recursive: true });
    writeFileSync(join(cache, 'toolchains', 'default.json'), JSON.stringify({ digest }));
    const env = { ...process.env, ...o.env, BERTH_HOME: home, BERTH_ENGINE: engine, BERTH_CACHE: cache, BERTH_NO_AUTOSTART: '1' };
    const logPath = join(home, 'daemon.log');
    const fd = openSync(logPath, 'a');
    const args = [BERTH, 'daemon', ...(o.listen ? ['--listen', o.listen] : [])];
    const proc = spawn(process.execPath, args, { env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const kill = onCleanup(`kill daemon ${proc.pid}`, () => void proc.kill('SIGKILL'));
    const socketPath = join(home, 'berth.sock');
    const readLog = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8').trim() : '');
    const probe = new NodeClient({ socketPath });
    try {
      const until = performance.now() + 30_000;
      for (;;) {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`berth daemon on ${engine} exited: ${readLog()}`);
        if (performance.now() > until) throw new Error(`berth daemon on ${engine} did not answer within 30 s: ${readLog()}`);
        if (existsSync(socketPath)) {
          const ok = await probe.node(AbortSignal.timeout(2000)).then(
            () => true,
            () => false,
          );
          if (ok) break;
        }
        await sleep(25);
      }
    } finally {
      probe.close();
    }
    kill();
    const nodeId = readFileSync(join(home, 'node-id'), 'utf8').trim();
    berthNodes.push([engine, nodeId]);
    log(`berth daemon ${nodeId} on ${engine} (pid ${proc.pid}, home ${home})`);
    return new BerthNode(engine, home, env, proc, socketPath, nodeId);
  }

  /** The TCP address the daemon reports in its log (started with `listen`), and its bearer token. */
  async tcpEndpoint(timeoutMs = 10_000): Promise<{ host: string; port: number; token: string }> {
    const logPath = join(this.home, 'daemon.log');
    const until = performance.now() + timeoutMs;
    for (;;) {
      const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
      const m = /also listening on tcp:\/\/(\S+):(\d+)/.exec(text);
      if (m) {
        const token = this.env.BERTH_TOKEN ?? readFileSync(join(this.home, 'token'), 'utf8').trim();
        return { host: m[1]!, port: Number(m[2]), token };
      }
      if (!this.alive()) throw new Error(`berth daemon exited before listening on TCP: ${text.trim()}`);
      if (performance.now() > until) throw new Error(`berth daemon logged no TCP address within ${timeoutMs} ms: ${text.trim()}`);
      await sleep(25);
    }
  }

  cli(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return run(process.execPath, [BERTH, ...args], { env: this.env, cwd: ROOT, timeoutMs });
  }

  private alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Removes every environment, stops the daemon, and removes anything its node left. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unregister();
    const problems: string[] = [];
    if (this.alive()) {
      try {
        for (const e of await this.client.listEnvs(AbortSignal.timeout(10_000))) {
          await this.client
            .removeEnv(e.name, { discard: true }, AbortSignal.timeout(60_000))
            .catch((err: unknown) => problems.push(`rm ${e.name}: ${errorText(err)}`));
        }
      } catch (err) {
        problems.push(`listing environments: ${errorText(err)}`);
      }
    }
    this.client.close();
    if (this.alive()) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGTERM');
      if ((await Promise.race([exited.then(() => true), sleep(10_000, false)])) === false) {
        this.proc.kill('SIGKILL');
        await exited;
      }
    }
    await removeContainers(this.engine, containersLabelled(this.engine, `${LABEL.node}=${this.nodeId}`));
    if (problems.length) throw new Error(problems.join('; '));
  }
}

// ---- devcontainer ------------------------------------------------------------------------

/** A workspace folder whose devcontainer.json names the image; its containers carry the run label. */
export function devcontainerWorkspace(engine: EngineName, image: string): string {
  const dir = tempDir(`berth-bench-dc-${engine}-`);
  mkdirSync(join(dir, '.devcontainer'));
  writeFileSync(
    join(dir, '.devcontainer', 'devcontainer.json'),
    JSON.stringify({ image, runArgs: [...ulimitArgs(), ...labelArgs(engine)] }, null, 2) + '\n',
  );
  return dir;
}

export function dockerPath(engine: EngineName): string {
  return ENGINE_CLI[engine];
}

/** `devcontainer up`; returns the container id, or throws with the CLI's exact output. */
export async function devcontainerUp(engine: EngineName, dir: string): Promise<string> {
  const r = await run(DEVCONTAINER, ['up', '--workspace-folder', dir, '--docker-path', dockerPath(engine)], {
    cwd: dir,
    timeoutMs: 120_000,
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let outcome: { outcome?: string; containerId?: string; message?: string; description?: string } = {};
  try {
    outcome = JSON.parse(last) as typeof outcome;
  } catch {
    // falls through to the error below
  }
  if (r.code !== 0 || outcome.outcome !== 'success' || !outcome.containerId) {
    const detail =
      [outcome.message, outcome.description].filter(Boolean).join(': ') || last || r.stderr.trim().split('\n').slice(-8).join('\n');
    throw new Error(`devcontainer up --docker-path ${dockerPath(engine)} exited ${r.code}: ${detail}`);
  }
  return outcome.containerId;
}

export async function devcontainerExec(engine: EngineName, dir: string, argv: string[]): Promise<void> {
  await mustRun(DEVCONTAINER, ['exec', '--workspace-folder', dir, '--docker-path', dockerPath(engine), ...argv], {
    cwd: dir,
    timeoutMs: 60_000,
  });
}

export async function removeContainer(engine: EngineName, id: string): Promise<void> {
  await removeContainers(engine, [id]);
}

/** Which berth is measured: the commit of ROOT, and whether the working tree differs from it. */
export function berthRevision(): { commit: string | null; dirty: boolean | null } {
  try {
    const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'bin'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return { commit: null, dirty: null };
  }
}

// ---- the machine -------------------------------------------------------------------------

export async function machine(engines: EngineName[]): Promise<Record<string, unknown>> {
  const c = cpus();
  const engineInfo: Record<string, unknown> = {};
  for (const e of engines) {
    const api = new EngineApi(e);
    try {
      engineInfo[e] = { version: await api.version(), running_containers_at_start: await api.runningContainers() };
    } catch (err) {
      engineInfo[e] = { error: errorText(err) };
    } finally {
      api.close();
    }
  }
  return {
    cpus: c.length,
    cpu_model: c[0]?.model ?? null,
    memory_gb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    loadavg_at_start: loadavg().map((x) => Math.round(x * 100) / 100),
    engines: engineInfo,
  };
}

/**
 * The opening every engine-comparing bench shares: machine, options and revision in the
 * report, the toolchain digest, a test repository, and the toolchain's tag in each engine.
 */
export async function prepareEngineBench(
  report: Record<string, unknown>,
  opts: unknown,
  engines: EngineName[],
  results: unknown[],
): Promise<{ digest: string; repo: string; tags: Record<string, string> }> {
  report.machine = await machine(engines);
  report.options = opts;
  report.berth = berthRevision();
  report.percentiles = 'linear interpolation between closest ranks';
  report.results = results;
  const digest = await toolchainDigest();
  const repo = makeRepo();
  const tags: Record<string, string> = {};
  for (const engine of engines) {
    const api = new EngineApi(engine);
    try {
      tags[engine] = await api.imageTag(digest);
    } finally {
      api.close();
    }
  }
  report.image = { digest, tags };
  return { digest, repo, tags };
}

/** Regular files under `dir`, their apparent size and the disk they take. */
export function treeSize(dir: string): { files: number; bytes: number; diskBytes: number } {
  let files = 0;
  let bytes = 0;
  let diskBytes = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) {
        const st = lstatSync(p);
        files++;
        bytes += st.size;
        diskBytes += st.blocks * 512;
      }
    }
  }
  return { files, bytes, diskBytes };
}
