// Readiness and verification probes, run inside the environment.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { WORKDIR } from './paths.js';
import { listeners, processes } from './procfs.js';
import type { ProbeResult, Readiness } from './protocol.js';

const EXCERPT = 512;

export function httpProbe(port: number, path: string, timeoutMs = 5000, expect?: number): Promise<ProbeResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: path.startsWith('/') ? path : `/${path}`, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < EXCERPT) chunks.push(c);
        size += c.length;
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const ok = expect ? status === expect : status >= 200 && status < 400;
        const bodyExcerpt = Buffer.concat(chunks).subarray(0, EXCERPT).toString('utf8');
        resolve({ ok, status, bodyExcerpt, detail: `HTTP ${status} from 127.0.0.1:${port}${path}`, ms: performance.now() - t0 });
      });
      res.on('error', (err) => resolve({ ok: false, detail: `HTTP response failed: ${err.message}`, ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({
        ok: false,
        detail: `HTTP request to 127.0.0.1:${port}${path} failed: ${err.code ?? err.message}`,
        ms: performance.now() - t0,
      }),
    );
  });
}

export function commandProbe(command: string, timeoutMs = 10_000): Promise<ProbeResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: WORKDIR, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => out.push(c));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: `could not run the check: ${err.message}`, ms: performance.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8').trim().slice(-EXCERPT);
      resolve({
        ok: code === 0,
        detail: code === 0 ? `\`${command}\` exited 0` : `\`${command}\` ${signal ? `was killed (${signal})` : `exited ${code}`}`,
        bodyExcerpt: text,
        ms: performance.now() - t0,
      });
    });
  });
}

/** Who holds a listening port: the pid and its session. */
export function portOwner(port: number): { pid: number | null; sid: number | null; cmd: string | null } | null {
  const l = listeners().find((x) => x.port === port);
  if (!l) return null;
  if (l.pid === null) return { pid: null, sid: null, cmd: null };
  const p = processes().find((x) => x.pid === l.pid);
  return { pid: l.pid, sid: p?.sid ?? null, cmd: p?.cmd ?? null };
}

/**
 * One readiness check for a service whose processes share session `sid`. A port counts
 * only when the service itself listens on it, never when another process holds it.
 */
export async function checkReadiness(ready: Readiness, sid: number): Promise<ProbeResult & { foreign?: boolean }> {
  const t0 = performance.now();
  if (ready.kind === 'cmd') return commandProbe(ready.command);
  const owner = portOwner(ready.port);
  if (!owner) return { ok: false, detail: `nothing listens on port ${ready.port} yet`, ms: performance.now() - t0 };
  if (owner.sid !== null && owner.sid !== sid) {
    return {
      ok: false,
      foreign: true,
      detail: `port ${ready.port} is held by another process (pid ${owner.pid}: ${owner.cmd ?? '?'})`,
      ms: performance.now() - t0,
    };
  }
  if (ready.kind === 'tcp') return { ok: true, detail: `port ${ready.port} is listening`, ms: performance.now() - t0 };
  return httpProbe(ready.port, ready.path, 5000, ready.status);
}
