// Everything an agent would otherwise have to guess, in one document.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { arch, hostname, release } from 'node:os';
import { join } from 'node:path';
import { WORKDIR } from './paths.js';
import { listeners, processes, resources } from './procfs.js';
import type { ServiceStatus } from './protocol.js';

const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY|AUTH)/i;
const SECRET_VALUE = /^(gh[pousr]_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9-_]{20,}|xox[abpr]-|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\.)/;

const TOOLS: Array<[string, string[]]> = [
  ['node', ['--version']],
  ['npm', ['--version']],
  ['python3', ['--version']],
  ['pip3', ['--version']],
  ['git', ['--version']],
  ['bash', ['--version']],
  ['curl', ['--version']],
  ['go', ['version']],
  ['rustc', ['--version']],
  ['cargo', ['--version']],
  ['java', ['-version']],
  ['pnpm', ['--version']],
  ['yarn', ['--version']],
];

const versionCache = new Map<string, string>();

function run(cmd: string, args: string[], timeoutMs = 2000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: WORKDIR, timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr ? String(stderr) : ''}` });
    });
  });
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

export async function toolVersions(): Promise<Record<string, { path: string; version: string }>> {
  const out: Record<string, { path: string; version: string }> = {};
  await Promise.all(
    TOOLS.map(async ([name, args]) => {
      const path = which(name);
      if (!path) return;
      const key = `${path}@${statSync(path).mtimeMs}`;
      let version = versionCache.get(key);
      if (version === undefined) {
        const r = await run(path, args);
        version = (/\d+\.\d+(?:\.\d+)?[^\s,()]*/.exec(r.out)?.[0] ?? r.out.split('\n')[0] ?? '').trim();
        versionCache.set(key, version);
      }
      out[name] = { path, version };
    }),
  );
  return out;
}

function osRelease(): Record<string, string> {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    const out: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line);
      if (m) out[m[1]!] = m[2]!.replace(/^"|"$/g, '');
    }
    return out;
  } catch {
    return {};
  }
}

export function redactedEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (v === undefined) continue;
    out[k] = SECRET_NAME.test(k) || SECRET_VALUE.test(v) ? '[redacted]' : v;
  }
  return out;
}

async function gitState(): Promise<Record<string, unknown>> {
  if (!existsSync(join(WORKDIR, '.git'))) return { repository: false };
  const [status, base] = await Promise.all([
    run('git', ['status', '--porcelain=v2', '--branch', '-z']),
    run('git', ['config', 'berth.base']),
  ]);
  if (status.code !== 0) return { repository: true, error: status.out.trim().slice(0, 300) };
  let branch: string | null = null;
  let head: string | null = null;
  const dirty: Array<{ path: string; status: string }> = [];
  for (const entry of status.out.split('\0')) {
    if (entry.startsWith('# branch.head ')) branch = entry.slice(14);
    else if (entry.startsWith('# branch.oid ')) head = entry.slice(13);
    else if (entry.startsWith('1 ') || entry.startsWith('2 ')) {
      const f = entry.split(' ');
      dirty.push({ status: f[1]!, path: f.slice(8).join(' ') });
    } else if (entry.startsWith('? ')) dirty.push({ status: 'untracked', path: entry.slice(2) });
  }
  const baseSha = base.out.trim() || null;
  let ahead: number | null = null;
  let behind: number | null = null;
  if (baseSha && head && head !== '(initial)') {
    const counts = await run('git', ['rev-list', '--left-right', '--count', `${baseSha}...HEAD`]);
    const [b, a] = counts.out.trim().split(/\s+/).map(Number);
    if (counts.code === 0) {
      behind = b ?? null;
      ahead = a ?? null;
    }
  }
  return { repository: true, branch, head, base: baseSha, ahead, behind, dirty, clean: dirty.length === 0 };
}

export async function describe(services: ServiceStatus[]): Promise<Record<string, unknown>> {
  const [tools, git] = await Promise.all([toolVersions(), gitState()]);
  const procs = processes();
  const bySid = new Map<number, string>();
  for (const s of services) if (s.pid) bySid.set(s.pid, s.name);
  const procSid = new Map(procs.map((p) => [p.pid, p.sid]));
  const os = osRelease();
  return {
    os: {
      name: os.PRETTY_NAME ?? os.NAME ?? 'unknown',
      id: os.ID ?? null,
      version: os.VERSION_ID ?? null,
      kernel: release(),
      arch: arch(),
      hostname: hostname(),
    },
    tools: tools,
    path: (process.env.PATH ?? '').split(':').filter(Boolean),
    workdir: WORKDIR,
    env: redactedEnv(),
    processes: procs.map((p) => ({ ...p, service: bySid.get(p.sid) ?? null })),
    ports: listeners().map((l) => ({ ...l, service: l.pid ? (bySid.get(procSid.get(l.pid) ?? -1) ?? null) : null })),
    services,
    git,
    resources: resources(),
  };
}
