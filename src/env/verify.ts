// `verify`: nothing is "ready" until checked. Evidence, never an assumption: every
// service's readiness check run again, HTTP probes with status and body, screenshots taken
// by headless Chromium on the node (in a network namespace where only the environment's
// ports exist), and test results parsed from TAP or JUnit.
import { spawn, type ChildProcess } from 'node:child_process';
import { Server } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceInfo, VerifyRequest, VerifyResult } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { pngStats } from '../core/png.js';
import { parseLocalUrl } from '../core/readiness.js';
import { parseJUnit, parseTap } from '../core/test-results.js';
import { ask } from './env-ops.js';
import { execBuffered } from './exec-service.js';
import { relayToEnv } from './forward.js';
import type { EnvManager } from './manager.js';

export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const p of [env.BERTH_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (p && existsSync(p)) return p;
  }
  return null;
}

export async function verify(manager: EnvManager, name: string, req: VerifyRequest): Promise<VerifyResult> {
  // Refuse anything outside the environment before doing any work.
  const http = (req.http ?? []).map((u) => ({ url: u, ...parseLocalUrl(u) }));
  const shots = (req.screenshot ?? []).map((u) => ({ url: u, ...parseLocalUrl(u) }));
  const failures: string[] = [];

  const checked = (await ask(manager, name, { op: 'service.check' })).services as ServiceInfo[];
  const services = checked.map((s) => {
    const ok = s.state === 'ready' && (s.check?.ok ?? false);
    if (!ok) failures.push(`service ${s.name}: ${s.check?.detail ?? s.reason ?? s.state}`);
    return { name: s.name, ok, state: s.state, check: s.check, logTail: ok ? null : s.logTail };
  });

  const httpResults: VerifyResult['http'] = [];
  for (const h of http) {
    const probe = (await ask(manager, name, { op: 'probe.http', port: h.port, path: h.path })).probe!;
    if (!probe.ok) failures.push(`${h.url}: ${probe.detail}`);
    httpResults.push({ url: h.url, ...probe });
  }

  const screenshots: VerifyResult['screenshots'] = [];
  for (const s of shots) {
    const r = await screenshot(manager, name, s.port, s.path);
    if (!r.ok) failures.push(`screenshot of ${s.url}: ${r.detail}`);
    screenshots.push({ url: s.url, ...r });
  }

  let tests: VerifyResult['tests'] = null;
  if (req.test) {
    const r = await execBuffered(manager, name, { argv: req.test.argv, timeoutMs: req.test.timeoutMs ?? 600_000 });
    const stdout = Buffer.from(r.stdout, 'base64').toString('utf8');
    const stderr = Buffer.from(r.stderr, 'base64').toString('utf8');
    let summary = null;
    if (req.test.junit) {
      const file = await ask(manager, name, { op: 'readFile', path: req.test.junit, maxBytes: 32 << 20 }).catch((err: unknown) => {
        failures.push(`tests: could not read ${req.test!.junit}: ${(err as Error).message}`);
        return null;
      });
      if (file) summary = parseJUnit(Buffer.from(file.data ?? '', 'base64').toString('utf8'));
    } else summary = parseTap(stdout);
    const ok = r.exitCode === 0 && (summary ? summary.failed === 0 : true);
    if (!ok) failures.push(`tests: \`${req.test.argv.join(' ')}\` exited ${r.exitCode}${summary ? `, ${summary.failed} failed` : ''}`);
    tests = { argv: req.test.argv, exitCode: r.exitCode, ok, summary, outputTail: (stdout + stderr).split('\n').slice(-30).join('\n') };
  }

  return {
    verified: failures.length === 0,
    checkedAt: new Date().toISOString(),
    services,
    http: httpResults,
    screenshots,
    tests,
    failures,
  };
}

async function screenshot(
  manager: EnvManager,
  name: string,
  port: number,
  path: string,
): Promise<{ ok: boolean; path: string | null; bytes: number; width: number; height: number; blank: boolean; detail: string }> {
  const none = { ok: false, path: null, bytes: 0, width: 0, height: 0, blank: true };
  const chromium = chromiumPath();
  if (!chromium) return { ...none, detail: 'Chromium is not installed on this node (apt-get install chromium)' };
  const jail = new BrowserJail(manager, name); // it starts while the page is probed
  const profile = mkdtempSync(join(tmpdir(), 'berth-chromium-'));
  try {
    const [probe, ports] = await Promise.all([
      ask(manager, name, { op: 'probe.http', port, path }).then((r) => r.probe!),
      listeningPorts(manager, name),
    ]);
    if (!probe.status || probe.status >= 400) return { ...none, detail: probe.detail };
    const dir = join(manager.config.home, 'evidence', name);
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${port}.png`);
    if (!(await jail.serve([port, ...ports.filter((p) => p !== port)])))
      return { ...none, detail: `the browser could not be isolated: ${jail.lastError() || 'no listener in its namespace'}` };
    // The page is the environment's: it loads as its own origin, so its relative and
    // same-port links work, and so do links to the environment's other ports.
    const url = `http://localhost:${port}${path}`;
    const code = await jail.run([
      chromium,
      ...CHROMIUM_FLAGS,
      `--user-data-dir=${profile}`,
      '--window-size=1280,800',
      `--screenshot=${out}`,
      url,
    ]);
    if (!existsSync(out)) {
      const why = jail.lastError();
      return { ...none, detail: `Chromium exited ${code} without a screenshot${why ? `: ${why}` : ''}` };
    }
    const bytes = statSync(out).size;
    const stats = pngStats(readFileSync(out));
    return {
      ok: !stats.blank,
      path: out,
      bytes,
      width: stats.width,
      height: stats.height,
      blank: stats.blank,
      detail: stats.blank ? 'the page rendered blank' : `${stats.width}x${stats.height}, ${stats.colours} colours sampled`,
    };
  } catch (err) {
    throw err instanceof BerthError ? err : new BerthError('internal', `screenshot failed: ${(err as Error).message}`);
  } finally {
    await jail.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

/**
 * Chromium's flags. The browser runs where only the environment's ports exist (see
 * BrowserJail); these switch off what would talk to anything else, as a second line.
 */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-domain-reliability',
  '--disable-sync',
  '--no-pings',
  '--webrtc-ip-handling-policy=disable_non_proxied_udp',
  // No name resolves but the environment's own: no DNS lookups, prefetched or not.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
  '--disable-dev-shm-usage',
  '--hide-scrollbars',
];

/** At most this many of the environment's other listening ports are offered to the page. */
const MAX_RELAYED_PORTS = 32;

/** The TCP ports listening inside the environment, from its kernel's tables. */
async function listeningPorts(manager: EnvManager, name: string): Promise<number[]> {
  const r = await ask(manager, name, { op: 'batch', steps: [{ argv: ['cat', '/proc/net/tcp', '/proc/net/tcp6'], timeoutMs: 5000 }] }).catch(
    () => undefined,
  );
  const text = Buffer.from(r?.batch?.[0]?.stdout ?? '', 'base64').toString('utf8');
  const ports = new Set<number>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '0A') ports.add(parseInt(f[1]!.split(':').pop()!, 16)); // 0A = LISTEN
  }
  return [...ports].slice(0, MAX_RELAYED_PORTS);
}

/**
 * Runs in the browser's namespace, as its first process: brings up loopback, then, told the
 * ports, listens on each there (127.0.0.1 and ::1) and hands every listener to the daemon,
 * which serves it; told the browser's command, runs it and exits with its code.
 */
const JAIL = `
const { execFileSync, spawn } = require('node:child_process');
const net = require('node:net');
try {
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'ignore' });
} catch (e) {
  console.error('could not bring up loopback in the namespace (is iproute2 installed?): ' + e.message);
  process.exit(1);
}
process.on('message', (m) => {
  if (m && Array.isArray(m.ports)) {
    let left = m.ports.length * 2;
    let sent = 0;
    const settle = () => { if (--left === 0) process.send({ ready: sent }); };
    for (const port of m.ports) for (const host of ['127.0.0.1', '::1']) {
      const s = net.createServer();
      s.once('error', settle); // no IPv6 here: the IPv4 listener is enough
      s.listen(port, host, () => process.send({ port }, s, () => { s.close(); sent++; settle(); }));
    }
  }
  if (m && Array.isArray(m.argv)) {
    const c = spawn(m.argv[0], m.argv.slice(1), { stdio: 'ignore' });
    c.once('error', (e) => { console.error(e.message); process.exit(127); });
    c.once('exit', (code) => process.exit(code ?? 128));
  }
});`;

/**
 * A network namespace (and PID namespace) of the browser's own. Its only listeners are the
 * environment's ports, each carried to the environment through the agent, so a page in it
 * can reach nothing else: not the node's loopback services, not the LAN, not the cloud
 * metadata address. Ending the namespace's first process ends the browser with it.
 */
class BrowserJail {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number>;
  private readonly timer: NodeJS.Timeout;
  private readonly relays: Array<{ close(): Promise<void> }> = [];
  private stderr = '';
  private received = 0;
  private expected = -1;
  private onServed: (() => void) | undefined;

  constructor(manager: EnvManager, name: string) {
    // As root, namespaces of the node's; otherwise owned by a user namespace of our own.
    const user = process.getuid?.() === 0 ? [] : ['--user', '--map-root-user'];
    this.child = spawn('unshare', [...user, '--net', '--pid', '--fork', '--kill-child', '--', process.execPath, '-e', JAIL], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr?.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString('utf8')).slice(-2000)));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.stderr += `\n${err.message}`;
        resolve(-1);
      });
      this.child.once('close', (c) => resolve(c ?? -1));
    });
    this.timer = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
    this.child.on('message', (m: { port?: number; ready?: number }, handle: unknown) => {
      if (typeof m.port === 'number' && handle instanceof Server) {
        this.received++;
        this.relays.push(relayToEnv(manager, name, m.port, handle));
      }
      if (typeof m.ready === 'number') this.expected = m.ready;
      if (this.received === this.expected) this.onServed?.();
    });
  }

  private send(msg: object): void {
    if (this.child.connected) this.child.send(msg, () => {});
  }

  /** Listens on `ports` inside; resolves, once the daemon serves them, to how many it serves. */
  serve(ports: number[]): Promise<number> {
    return new Promise((resolve) => {
      this.onServed = () => resolve(this.received);
      void this.exited.then(() => resolve(this.received));
      this.send({ ports });
    });
  }

  /** Runs the browser inside; resolves to its exit code. */
  run(argv: string[]): Promise<number> {
    this.send({ argv });
    return this.exited;
  }

  lastError(): string {
    return this.stderr.trim().split('\n').pop() ?? '';
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    await Promise.all(this.relays.map((r) => r.close()));
  }
}
