// What the kernel knows about the environment: processes, listening sockets and who owns
// them, and the cgroup's limits and use. Read from /proc and /sys directly: no tools needed.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** Session id: a service's processes share its session. */
  sid: number;
  rssKb: number;
  cmd: string;
}

export function processes(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      out.push({
        pid: Number(name),
        ppid: Number(fields[1]),
        sid: Number(fields[3]),
        rssKb: Number(fields[21]) * 4,
        cmd: cmdline || `[${comm}]`,
      });
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

export interface Listener {
  port: number;
  address: string;
  protocol: 'tcp' | 'tcp6';
  pid: number | null;
}

/** Listening TCP sockets, with the process holding each. */
export function listeners(): Listener[] {
  const byInode = new Map<string, Omit<Listener, 'pid'>>();
  for (const protocol of ['tcp', 'tcp6'] as const) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${protocol}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A = LISTEN
      const [addrHex, portHex] = f[1]!.split(':');
      byInode.set(f[9]!, { port: parseInt(portHex!, 16), address: decodeAddress(addrHex!), protocol });
    }
  }
  const owner = new Map<string, number>();
  if (byInode.size) {
    for (const pid of safeReaddir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      for (const fd of safeReaddir(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          if (m && byInode.has(m[1]!) && !owner.has(m[1]!)) owner.set(m[1]!, Number(pid));
        } catch {
          /* closed meanwhile */
        }
      }
    }
  }
  const seen = new Set<string>();
  const out: Listener[] = [];
  for (const [inode, l] of byInode) {
    const key = `${l.port}/${l.address}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ...l, pid: owner.get(inode) ?? null });
  }
  return out.sort((a, b) => a.port - b.port);
}

function decodeAddress(hex: string): string {
  if (hex.length === 8) {
    const n = parseInt(hex, 16);
    return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255].join('.');
  }
  if (/^0+$/.test(hex)) return '::';
  if (hex === '00000000000000000000000001000000') return '::1';
  return hex;
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function readNum(path: string): number | null {
  try {
    const t = readFileSync(path, 'utf8').trim();
    if (t === 'max') return null;
    const n = Number(t.split(/\s+/)[0]);
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

export interface Resources {
  memory: { limitBytes: number | null; usedBytes: number | null };
  pids: { limit: number | null; current: number | null };
  cpu: { limitCpus: number | null; usageSeconds: number | null };
}

/** cgroup v1 or v2, whichever the environment sees. */
export function resources(): Resources {
  const v1 = readNum('/sys/fs/cgroup/memory/memory.limit_in_bytes') !== null;
  if (v1) {
    const limit = readNum('/sys/fs/cgroup/memory/memory.limit_in_bytes');
    const quota = readNum('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');
    const period = readNum('/sys/fs/cgroup/cpu/cpu.cfs_period_us');
    const usage = readNum('/sys/fs/cgroup/cpuacct/cpuacct.usage') ?? readNum('/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage');
    return {
      memory: {
        limitBytes: limit !== null && limit < 2 ** 60 ? limit : null,
        usedBytes: readNum('/sys/fs/cgroup/memory/memory.usage_in_bytes'),
      },
      pids: { limit: readNum('/sys/fs/cgroup/pids/pids.max'), current: readNum('/sys/fs/cgroup/pids/pids.current') },
      cpu: { limitCpus: quota && quota > 0 && period ? quota / period : null, usageSeconds: usage === null ? null : usage / 1e9 },
    };
  }
  let cpus: number | null = null;
  try {
    const [q, p] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(' ');
    if (q !== 'max') cpus = Number(q) / Number(p);
  } catch {
    /* no cpu controller */
  }
  let usageSeconds: number | null = null;
  try {
    const m = /usage_usec (\d+)/.exec(readFileSync('/sys/fs/cgroup/cpu.stat', 'utf8'));
    if (m) usageSeconds = Number(m[1]) / 1e6;
  } catch {
    /* none */
  }
  return {
    memory: { limitBytes: readNum('/sys/fs/cgroup/memory.max'), usedBytes: readNum('/sys/fs/cgroup/memory.current') },
    pids: { limit: readNum('/sys/fs/cgroup/pids.max'), current: readNum('/sys/fs/cgroup/pids.current') },
    cpu: { limitCpus: cpus, usageSeconds },
  };
}
