// Declared long-running processes: a readiness check, logs in a bounded ring buffer and in
// files that outlive the daemon, a restart policy, and a stop that ends the whole process
// group. Services belong to the agent, not to a connection, so a daemon restart does not
// touch them; their specs are kept on disk so the agent restarts them after a container
// restart.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
  fstatSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { killGroup } from './context.js';
import { resolveInside, RUN_DIR, WORKDIR } from './paths.js';
import { checkReadiness } from './probes.js';
import { listeners, processes } from './procfs.js';
import type { ProbeResult, ServiceSpec, ServiceState, ServiceStatus } from './protocol.js';

const LOG_DIR = join(RUN_DIR, 'logs');
const STATE_FILE = join(RUN_DIR, 'services.json');
const RING_BYTES = 256 * 1024;
const LOG_ROTATE_BYTES = 8 * 1024 * 1024;
const TAIL_LINES = 20;
const MAX_RESTARTS = 10;

export class ServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

class Ring {
  private chunks: Buffer[] = [];
  private size = 0;
  push(c: Buffer): void {
    this.chunks.push(c);
    this.size += c.length;
    while (this.size > RING_BYTES && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }
  tail(bytes: number): Buffer {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - bytes));
  }
  get empty(): boolean {
    return this.size === 0;
  }
}

class Service {
  state: ServiceState = 'starting';
  child: ChildProcess | undefined;
  restarts = 0;
  startedAt: Date | null = null;
  readyAt: Date | null = null;
  readyMs: number | null = null;
  exitCode: number | null = null;
  reason: string | null = null;
  lastCheck: ProbeResult | undefined;
  readonly ring = new Ring();
  readonly followers = new Set<(c: Buffer) => void>();
  private logFd: number | undefined;
  private waiters: Array<() => void> = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private generation = 0;

  constructor(public spec: ServiceSpec) {}

  get logPath(): string {
    return join(LOG_DIR, `${this.spec.name}.log`);
  }

  start(): void {
    const gen = ++this.generation;
    clearTimeout(this.restartTimer);
    this.state = this.restarts > 0 ? 'restarting' : 'starting';
    this.reason = null;
    this.exitCode = null;
    this.readyAt = null;
    this.readyMs = null;
    this.startedAt = new Date();
    this.log(Buffer.from(`--- berth: starting ${this.spec.argv.join(' ')} ---\n`));
    const t0 = performance.now();
    const child = spawn(this.spec.argv[0]!, this.spec.argv.slice(1), {
      cwd: this.spec.cwd ? resolveInside(this.spec.cwd) : WORKDIR,
      env: { ...process.env, ...(this.spec.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a new session: its pid is the session id every descendant shares
    });
    this.child = child;
    child.stdout.on('data', (c: Buffer) => this.log(c));
    child.stderr.on('data', (c: Buffer) => this.log(c));
    child.once('error', (err) => {
      if (gen !== this.generation) return;
      this.fail(`could not start: ${err.message}`);
    });
    child.once('exit', (code, signal) => {
      if (gen !== this.generation) return;
      this.exitCode = code ?? null;
      this.log(Buffer.from(`--- berth: exited ${signal ? `on ${signal}` : `with code ${code}`} ---\n`));
      // Stopped by the user, or killed because it never became ready: that verdict stands.
      if (this.state === 'stopped' || this.state === 'failed') return;
      const wasStarting = this.state === 'starting' || this.state === 'restarting';
      if (wasStarting) this.fail(`exited ${signal ? `on ${signal}` : `with code ${code}`} before it was ready`);
      else {
        this.state = 'exited';
        this.reason = `exited ${signal ? `on ${signal}` : `with code ${code}`}`;
      }
      this.maybeRestart(code ?? 1);
    });
    child.once('spawn', () => {
      if (gen === this.generation) void this.awaitReady(gen, t0);
    });
  }

  private async awaitReady(gen: number, t0: number): Promise<void> {
    const ready = this.spec.ready;
    if (!ready) {
      this.markReady(t0, { ok: true, detail: 'no readiness check declared: started', ms: 0 });
      return;
    }
    const deadline = Date.now() + (this.spec.readyTimeoutMs ?? 60_000);
    let delay = 10;
    for (;;) {
      if (gen !== this.generation || (this.state !== 'starting' && this.state !== 'restarting')) return;
      const r = await checkReadiness(ready, this.child?.pid ?? -1);
      if (gen !== this.generation || (this.state !== 'starting' && this.state !== 'restarting')) return;
      this.lastCheck = r;
      if (r.ok) return this.markReady(t0, r);
      if (r.foreign) {
        this.fail(r.detail);
        this.kill();
        return;
      }
      if (Date.now() > deadline) {
        this.fail(`not ready after ${Math.round((this.spec.readyTimeoutMs ?? 60_000) / 1000)} s: ${r.detail}`);
        this.kill(); // no stray process
        return;
      }
      await new Promise((r2) => setTimeout(r2, delay));
      delay = Math.min(delay * 2, 250);
    }
  }

  private markReady(t0: number, r: ProbeResult): void {
    this.state = 'ready';
    this.readyAt = new Date();
    this.readyMs = Math.round((performance.now() - t0) * 10) / 10;
    this.lastCheck = r;
    this.wake();
  }

  private fail(reason: string): void {
    this.state = 'failed';
    this.reason = reason;
    this.wake();
  }

  private maybeRestart(code: number): void {
    const policy = this.spec.restart ?? 'no';
    if (policy === 'no' || (policy === 'on-failure' && code === 0)) return;
    if (this.restarts >= MAX_RESTARTS) {
      this.reason = `${this.reason ?? 'exited'}; gave up after ${MAX_RESTARTS} restarts`;
      this.state = 'failed';
      return;
    }
    const delay = Math.min(250 * 2 ** this.restarts, 10_000);
    this.restarts++;
    this.restartTimer = setTimeout(() => this.start(), delay);
  }

  kill(): void {
    const pid = this.child?.pid;
    killGroup(pid, 'SIGTERM');
    const child = this.child;
    setTimeout(() => {
      if (child && child.exitCode === null && child.signalCode === null) killGroup(pid, 'SIGKILL');
    }, 3000).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.state = 'stopped';
    this.reason = 'stopped';
    this.wake();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    killGroup(child.pid, 'SIGTERM');
    const t = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    // Descendants that left the group but kept the session: end them too.
    for (const p of processes()) if (p.sid === child.pid) killGroup(p.pid, 'SIGKILL');
  }

  settled(): Promise<void> {
    if (this.state !== 'starting' && this.state !== 'restarting') return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  private log(c: Buffer): void {
    this.ring.push(c);
    for (const f of this.followers) f(c);
    try {
      if (this.logFd === undefined) {
        mkdirSync(LOG_DIR, { recursive: true });
        this.logFd = openSync(this.logPath, 'a');
      }
      writeSync(this.logFd, c);
      if (fstatSync(this.logFd).size > LOG_ROTATE_BYTES) {
        closeSync(this.logFd);
        this.logFd = undefined;
        renameSync(this.logPath, this.logPath + '.1');
      }
    } catch {
      /* logs are best effort; the ring still has them */
    }
  }

  tail(bytes: number): Buffer {
    if (!this.ring.empty) return this.ring.tail(bytes);
    return readTail(this.logPath, bytes);
  }

  status(): ServiceStatus {
    const pid = this.child?.pid ?? null;
    const running = this.child && this.child.exitCode === null && this.child.signalCode === null;
    const owned = running && pid ? ownedPorts(pid) : [];
    const failed = this.state === 'failed' || this.state === 'exited';
    return {
      name: this.spec.name,
      state: this.state,
      pid: running ? pid : null,
      argv: this.spec.argv,
      ready: this.spec.ready ?? null,
      restart: this.spec.restart ?? 'no',
      restarts: this.restarts,
      startedAt: this.startedAt?.toISOString() ?? null,
      readyAt: this.readyAt?.toISOString() ?? null,
      readyMs: this.readyMs,
      exitCode: this.exitCode,
      reason: this.reason,
      logTail: failed ? lastLines(this.tail(16 * 1024).toString('utf8'), TAIL_LINES) : null,
      ports: owned,
      ...(this.lastCheck ? { check: this.lastCheck } : {}),
    };
  }
}

function ownedPorts(sid: number): number[] {
  const inSession = new Set(
    processes()
      .filter((p) => p.sid === sid)
      .map((p) => p.pid),
  );
  return listeners()
    .filter((l) => l.pid !== null && inSession.has(l.pid))
    .map((l) => l.port);
}

function lastLines(text: string, n: number): string {
  return text
    .split('\n')
    .filter((l, i, a) => l.length > 0 || i < a.length - 1)
    .slice(-n)
    .join('\n');
}

function readTail(path: string, bytes: number): Buffer {
  try {
    const size = statSync(path).size;
    const fd = openSync(path, 'r');
    const len = Math.min(size, bytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    closeSync(fd);
    return buf;
  } catch {
    return Buffer.alloc(0);
  }
}

const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export class ServiceManager {
  private readonly services = new Map<string, Service>();

  private restored = false;

  /** After a container restart: bring back what was running (once; later calls do nothing). */
  restore(): void {
    if (this.restored) return;
    this.restored = true;
    if (!existsSync(STATE_FILE)) return;
    try {
      const saved = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as ServiceSpec[];
      // A service started since this agent began is not started twice.
      const fresh = saved.filter((spec) => !this.services.has(spec.name)).map((spec) => new Service(spec));
      for (const s of fresh) this.services.set(s.spec.name, s);
      for (const s of fresh) s.start();
    } catch {
      /* a corrupt state file: start with none */
    }
  }

  private persist(): void {
    const wanted = [...this.services.values()].filter((s) => s.state !== 'stopped').map((s) => s.spec);
    try {
      writeFileSync(STATE_FILE + '.tmp', JSON.stringify(wanted));
      renameSync(STATE_FILE + '.tmp', STATE_FILE);
    } catch {
      /* best effort */
    }
  }

  async start(spec: ServiceSpec, wait: boolean): Promise<ServiceStatus> {
    if (typeof spec?.name !== 'string' || !NAME_RE.test(spec.name))
      throw new ServiceError('invalid_request', 'service names are 1-63 lowercase letters, digits, - and _');
    if (!Array.isArray(spec.argv) || spec.argv.length === 0 || !spec.argv.every((a) => typeof a === 'string')) {
      throw new ServiceError('invalid_request', 'a service needs a command');
    }
    if (spec.cwd) resolveInside(spec.cwd);
    const existing = this.services.get(spec.name);
    if (existing && existing.state !== 'stopped' && existing.state !== 'failed' && existing.state !== 'exited') {
      throw new ServiceError('already_exists', `service ${spec.name} is already ${existing.state}; stop it first`);
    }
    if (spec.ready && spec.ready.kind !== 'cmd') {
      const port = spec.ready.port;
      const holder = listeners().find((l) => l.port === port);
      if (holder) {
        const who = holder.pid ? processes().find((p) => p.pid === holder.pid) : undefined;
        throw new ServiceError('port_in_use', `port ${port} is already in use${who ? ` by pid ${who.pid} (${who.cmd.slice(0, 80)})` : ''}`);
      }
    }
    if (existing) await existing.stop();
    const s = new Service(spec);
    this.services.set(spec.name, s);
    try {
      s.start();
    } catch (err) {
      this.services.delete(spec.name);
      throw new ServiceError('invalid_request', (err as Error).message);
    }
    this.persist();
    if (wait) await s.settled();
    return s.status();
  }

  async stop(name: string): Promise<ServiceStatus> {
    const s = this.mustGet(name);
    await s.stop();
    this.persist();
    return s.status();
  }

  list(): ServiceStatus[] {
    return [...this.services.values()].map((s) => s.status());
  }

  async check(): Promise<ServiceStatus[]> {
    const out: ServiceStatus[] = [];
    for (const s of this.services.values()) {
      const st = s.status();
      if (s.spec.ready && s.state === 'ready' && s.child?.pid) st.check = await checkReadiness(s.spec.ready, s.child.pid);
      else if (s.state === 'ready') st.check = { ok: true, detail: 'running; no readiness check declared', ms: 0 };
      else st.check = { ok: false, detail: s.reason ?? s.state, ms: 0 };
      out.push(st);
    }
    return out;
  }

  mustGet(name: string): Service {
    const s = this.services.get(name);
    if (!s) throw new ServiceError('not_found', `no service named ${name} in this environment`);
    return s;
  }

  stopAll(): void {
    for (const s of this.services.values()) s.kill();
  }
}
