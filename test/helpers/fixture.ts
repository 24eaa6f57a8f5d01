// Test fixtures that drive the real thing: the `berth` CLI as a user types it, a real daemon
// process on a real engine, and real git repositories. Each fixture owns its cleanup and
// prints what it made when a test fails.
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import http from 'node:http';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
export const BERTH = join(ROOT, 'bin', 'berth');

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/v1/node', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

/** Remembers whether any test in a suite failed, so its fixture can print what it made. */
export function failureTracker(): { track: <T>(p: Promise<T>) => Promise<T>; readonly failed: boolean } {
  let failed = false;
  return {
    track: <T>(p: Promise<T>): Promise<T> =>
      p.catch((err: unknown) => {
        failed = true;
        throw err;
      }),
    get failed() {
      return failed;
    },
  };
}

export type EngineName = 'podman' | 'docker';

export function testEngines(): EngineName[] {
  const list = (process.env.BERTH_TEST_ENGINES ?? 'podman,docker')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return list.filter((e): e is EngineName => e === 'podman' || e === 'docker');
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdin?: string | Buffer; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.stdin ?? '');
  });
}

/**
 * An engine's own CLI, pointed at the engine the tests use: scripts/test runs private engines
 * (BERTH_DOCKER_SOCKET for dockerd; Podman reads CONTAINERS_CONF and CONTAINERS_STORAGE_CONF).
 */
export function engineCli(engine: EngineName): { bin: string; env: NodeJS.ProcessEnv } {
  if (engine === 'podman') return { bin: 'podman', env: process.env };
  const sock = process.env.BERTH_DOCKER_SOCKET;
  return { bin: '/usr/bin/docker', env: sock ? { ...process.env, DOCKER_HOST: `unix://${sock}` } : process.env };
}

/** Runs an engine's own CLI (see engineCli); its stdout. */
export function engineRun(engine: EngineName, args: string[], opts: { ignoreOutput?: boolean } = {}): string {
  const { bin, env } = engineCli(engine);
  if (opts.ignoreOutput) {
    execFileSync(bin, args, { env, stdio: 'ignore' });
    return '';
  }
  return execFileSync(bin, args, { env, encoding: 'utf8' });
}

/** Lists the containers an engine holds with a label, through the engine's own CLI. */
export function engineContainers(engine: EngineName, label: string): string[] {
  return engineRun(engine, ['ps', '-a', '-q', '--no-trunc', '--filter', `label=${label}`])
    .split('\n')
    .filter(Boolean);
}

export class NodeFixture {
  readonly home: string;
  daemon: ChildProcess | undefined;
  private logPath: string;

  private constructor(
    readonly engine: EngineName,
    readonly extraEnv: Record<string, string>,
  ) {
    this.home = mkdtempSync(join(tmpdir(), `berth-test-${engine}-`));
    this.logPath = join(this.home, 'daemon.log');
  }

  static async start(engine: EngineName, extraEnv: Record<string, string> = {}): Promise<NodeFixture> {
    const f = new NodeFixture(engine, extraEnv);
    await f.startDaemon();
    return f;
  }

  /** A node started with these daemon arguments (`--listen ADDR`, say). */
  static async startWith(engine: EngineName, args: string[], extraEnv: Record<string, string> = {}): Promise<NodeFixture> {
    const f = new NodeFixture(engine, extraEnv);
    await f.startDaemonWith(args);
    return f;
  }

  get env(): NodeJS.ProcessEnv {
    // Each test node's dashboard on a port of its own (the default, 7781, is one per machine).
    return {
      ...process.env,
      BERTH_HOME: this.home,
      BERTH_ENGINE: this.engine,
      BERTH_NO_AUTOSTART: '1',
      BERTH_DASHBOARD: '127.0.0.1:0',
      ...this.extraEnv,
    };
  }

  get nodeId(): string {
    return readFileSync(join(this.home, 'node-id'), 'utf8').trim();
  }

  async startDaemon(extra: Record<string, string> = {}): Promise<void> {
    return this.startDaemonWith([], extra);
  }

  async startDaemonWith(args: string[], extra: Record<string, string> = {}): Promise<void> {
    const log = openSync(this.logPath, 'a');
    // SIGUSR2 makes Node write a diagnostic report (JavaScript stack, handles) into the home:
    // what a daemon that will not stop was doing, for the error below.
    this.daemon = spawn(
      process.execPath,
      ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${this.home}`, BERTH, 'daemon', ...args],
      { env: { ...this.env, ...extra }, stdio: ['ignore', log, log] },
    );
    const sock = join(this.home, 'berth.sock');
    for (let i = 0; i < 400; i++) {
      if (this.daemon.exitCode !== null) throw new Error(`daemon exited: ${this.log()}`);
      if (existsSync(sock) && (await answers(sock))) return;
      await sleep(25);
    }
    throw new Error(`daemon did not start: ${this.log()}`);
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  async killDaemon(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    const exited = new Promise((r) => d.once('exit', r));
    d.kill(signal);
    // Bounded: a daemon that does not stop in 30 s is a failure with its report, not a hang.
    const late = await Promise.race([exited.then(() => false), sleep(30_000).then(() => true)]);
    if (!late) return;
    d.kill('SIGUSR2');
    await sleep(2000);
    const reports = readdirSync(this.home).filter((f) => f.startsWith('report.') && f.endsWith('.json'));
    let stack = '(no report)';
    if (reports.length) {
      const r = JSON.parse(readFileSync(join(this.home, reports[reports.length - 1]!), 'utf8')) as {
        javascriptStack?: { message?: string; stack?: string[] };
        libuv?: Array<{ type: string; is_active: boolean; address?: string; localEndpoint?: unknown; remoteEndpoint?: unknown }>;
      };
      stack = [
        ...(r.javascriptStack?.stack ?? []),
        'active handles:',
        ...(r.libuv ?? [])
          .filter((h) => h.is_active)
          .map((h) => `${h.type} ${JSON.stringify(h.localEndpoint ?? '')} ${JSON.stringify(h.remoteEndpoint ?? '')}`),
      ].join('\n');
    }
    d.kill('SIGKILL');
    await exited;
    throw new Error(`the daemon did not stop within 30 s of ${signal}:\n${stack}\n[daemon log]\n${this.log()}`);
  }

  cli(args: string[], opts: { stdin?: string | Buffer; env?: Record<string, string> } = {}): Promise<CliResult> {
    return run(process.execPath, [BERTH, ...args], { env: { ...this.env, ...opts.env }, stdin: opts.stdin });
  }

  async json<T = unknown>(args: string[], opts: { stdin?: string } = {}): Promise<T> {
    const dd = args.indexOf('--');
    const withJson = dd < 0 ? [...args, '--json'] : [...args.slice(0, dd), '--json', ...args.slice(dd)];
    const r = await this.cli(withJson, opts);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Where the node keeps environment directories: `envs/` under its storage's root. */
  async envsDir(): Promise<string> {
    const info = await this.json<{ storage: { root: string } }>(['node', 'info']);
    return join(info.storage.root, 'envs');
  }

  containers(): string[] {
    return engineContainers(this.engine, `org.berth.node=${this.nodeId}`);
  }

  /** Removes everything this node made; prints the environments it had when `failed`. */
  async stop(failed = false): Promise<void> {
    if (failed) {
      const ls = await this.cli(['ls']).catch(() => undefined);
      process.stderr.write(`\n[fixture ${this.engine} ${this.home}] environments:\n${ls?.stdout ?? '?'}\n[daemon log]\n${this.log()}\n`);
      for (const id of this.containers()) {
        const { bin, env } = engineCli(this.engine);
        const logs = spawnSync(bin, ['logs', '--tail', '30', id], { encoding: 'utf8', env });
        process.stderr.write(`[container ${id.slice(0, 12)} log]\n${logs.stdout}${logs.stderr}\n`);
      }
    }
    if (this.daemon && this.daemon.exitCode === null && this.daemon.signalCode === null) {
      const ls = await this.cli(['ls', '--json']).catch(() => undefined);
      if (ls?.code === 0) {
        const names = (JSON.parse(ls.stdout) as Array<{ name: string }>).map((e) => e.name);
        if (names.length) await this.cli(['rm', ...names]);
      }
      await this.killDaemon('SIGTERM');
    }
    for (const id of existsSync(join(this.home, 'node-id')) ? this.containers() : []) {
      engineRun(this.engine, ['rm', '-f', id], { ignoreOutput: true });
    }
    // A copy-on-write file system the node set up in its home (BERTH_STORAGE=btrfs).
    if (existsSync(join(this.home, 'storage.img'))) spawnSync('umount', [join(this.home, 'fs')]);
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A real git repository: a small Node app on `main`, and a `feature` branch one commit ahead. */
export function makeRepo(): { path: string; main: string; feature: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'berth-repo-'));
  const g = (...args: string[]): string =>
    execFileSync('git', ['-C', path, '-c', 'user.name=test', '-c', 'user.email=test@example.invalid', ...args], {
      encoding: 'utf8',
    }).trim();
  g('init', '-q', '-b', 'main');
  writeFileSync(join(path, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', scripts: { test: 'node --test' } }, null, 2));
  writeFileSync(join(path, 'app.test.js'), "require('node:test')('adds', () => require('node:assert').strictEqual(1 + 1, 2));\n");
  mkdirSync(join(path, 'src'));
  writeFileSync(join(path, 'src', 'index.js'), 'module.exports = 42;\n');
  g('add', '-A');
  g('commit', '-q', '-m', 'initial');
  const main = g('rev-parse', 'HEAD');
  g('checkout', '-q', '-b', 'feature');
  writeFileSync(join(path, 'FEATURE.md'), 'a feature\n');
  g('add', '-A');
  g('commit', '-q', '-m', 'feature');
  const feature = g('rev-parse', 'HEAD');
  g('checkout', '-q', 'main');
  return { path, main, feature, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
