// `verify`: nothing is "ready" until checked. Evidence, never an assumption: every
// service's readiness check run again, HTTP probes with status and body, screenshots taken
// by headless Chromium on the node, and test results parsed from TAP or JUnit.
import { spawn } from 'node:child_process';
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
import { startForward } from './forward.js';
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
  const probe = (await ask(manager, name, { op: 'probe.http', port, path })).probe!;
  if (!probe.status || probe.status >= 400) return { ...none, detail: probe.detail };
  const fwd = await startForward(manager, name, port);
  const dir = join(manager.config.home, 'evidence', name);
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${port}.png`);
  const profile = mkdtempSync(join(tmpdir(), 'berth-chromium-'));
  try {
    const url = `http://127.0.0.1:${fwd.port}${path}`;
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        chromium,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--disable-dev-shm-usage',
          '--hide-scrollbars',
          `--user-data-dir=${profile}`,
          '--window-size=1280,800',
          `--screenshot=${out}`,
          url,
        ],
        { stdio: 'ignore' },
      );
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', () => resolve(-1));
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve(c ?? -1);
      });
    });
    if (!existsSync(out)) return { ...none, detail: `Chromium exited ${code} without a screenshot` };
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
    await fwd.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
