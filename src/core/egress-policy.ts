// Egress policies: what an environment may reach, by name. Pure: parsing, presets, matching
// and the least-privilege suggestion; the node enforces them (src/env/egress).
//
//   all                         plain egress, no proxy (the default)
//   learn                       everything allowed, every destination recorded
//   allow:ENTRY[,ENTRY…]        only these; everything else denied
//
// An entry is a preset (npm, pypi, debian, github), a name (`api.example.com`), a name and
// port (`api.example.com:8443`), a suffix (`*.internal.example:443`, subdomains only), an
// IPv4 address or CIDR block (`10.1.2.3:5432`, `10.0.0.0/8:443`). Without a port an entry
// means the web's ports, 80 and 443; `:*` means any port.
import { BerthError } from './errors.js';

export const WEB_PORTS: readonly number[] = [80, 443];

export type EgressEntry =
  | { kind: 'name'; name: string; ports: number[] | 'any' }
  | { kind: 'suffix'; suffix: string; ports: number[] | 'any' }
  | { kind: 'cidr'; base: number; bits: number; text: string; ports: number[] | 'any' };

export type EgressPolicy = { mode: 'all' } | { mode: 'learn' } | { mode: 'allow'; entries: EgressEntry[]; text: string };

/** What each preset holds. `debian` comes from the node's apt sources (the caller reads them). */
export interface PresetSources {
  debianMirrors: string[];
}

const PRESETS: Record<string, (s: PresetSources) => string[]> = {
  npm: () => ['registry.npmjs.org:443', 'registry.yarnpkg.com:443'],
  pypi: () => ['pypi.org:443', 'files.pythonhosted.org:443'],
  github: () => [
    'github.com:443',
    'api.github.com:443',
    'codeload.github.com:443',
    'objects.githubusercontent.com:443',
    'raw.githubusercontent.com:443',
    '*.githubusercontent.com:443',
  ],
  debian: (s) => s.debianMirrors,
};

export const PRESET_NAMES = Object.keys(PRESETS);

/** The `debian` preset: each apt source's host, on its scheme's port. */
export function debianMirrorEntries(uris: string[]): string[] {
  const out = new Set<string>();
  for (const u of uris) {
    const m = /^(https?):\/\/([^/:]+)(?::(\d+))?/.exec(u);
    if (m) out.add(`${m[2]!.toLowerCase()}:${m[3] ?? (m[1] === 'https' ? 443 : 80)}`);
  }
  return [...out];
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function bad(message: string): BerthError {
  return new BerthError('invalid_policy', message, 'see docs/egress.md for the policy syntax');
}

/** A DNS name in canonical form (lower case, no trailing dot), or null. */
export function canonicalName(raw: string): string | null {
  const n = raw.toLowerCase().replace(/\.$/, '');
  if (n.length === 0 || n.length > 253) return null;
  return n.split('.').every((l) => LABEL.test(l)) ? n : null;
}

export function parseIPv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function parsePorts(raw: string | undefined, entry: string): number[] | 'any' {
  if (raw === undefined) return [...WEB_PORTS];
  if (raw === '*') return 'any';
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) throw bad(`bad port in egress entry ${entry}`);
  return [Number(raw)];
}

function parseEntry(raw: string, sources: PresetSources, depth = 0): EgressEntry[] {
  const e = raw.trim();
  if (!e) throw bad('an empty entry in the egress allow list');
  if (/^[a-z]+$/.test(e) && !e.includes('.')) {
    const preset = PRESETS[e];
    if (!preset || depth > 0) {
      throw new BerthError('unknown_preset', `unknown egress preset ${e}`, `the presets are ${PRESET_NAMES.join(', ')}; names need a dot`);
    }
    const list = preset(sources);
    if (list.length === 0) throw new BerthError('unknown_preset', `the egress preset ${e} is empty on this node (no apt sources found)`);
    return list.flatMap((x) => parseEntry(x, sources, depth + 1));
  }
  if (e.startsWith('[') || (e.match(/:/g) ?? []).length > 1)
    throw bad(`IPv6 destinations are not supported (${e}): environments have no IPv6 egress`);
  const colon = e.lastIndexOf(':');
  const host = colon >= 0 ? e.slice(0, colon) : e;
  const ports = parsePorts(colon >= 0 ? e.slice(colon + 1) : undefined, e);
  const cidr = /^([\d.]+)(?:\/(\d{1,2}))?$/.exec(host);
  if (cidr && /^[\d.]+$/.test(cidr[1]!)) {
    const ip = parseIPv4(cidr[1]!);
    const bits = cidr[2] === undefined ? 32 : Number(cidr[2]);
    if (ip === null || bits > 32) throw bad(`bad address in egress entry ${e}`);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    if ((ip & mask) >>> 0 !== ip) throw bad(`${host} has host bits set; write the block's first address`);
    return [{ kind: 'cidr', base: ip, bits, text: host, ports }];
  }
  if (host.startsWith('*.')) {
    const suffix = canonicalName(host.slice(2));
    if (!suffix || !suffix.includes('.')) throw bad(`bad suffix in egress entry ${e}: write *.example.com`);
    return [{ kind: 'suffix', suffix, ports }];
  }
  const name = canonicalName(host);
  if (!name || !name.includes('.')) throw bad(`bad name in egress entry ${e}`);
  return [{ kind: 'name', name, ports }];
}

/** Parses `all`, `learn` or `allow:…`; a malformed policy or unknown preset throws. */
export function parseEgressPolicy(text: string, sources: PresetSources): EgressPolicy {
  const t = text.trim();
  if (t === 'all') return { mode: 'all' };
  if (t === 'learn') return { mode: 'learn' };
  if (!t.startsWith('allow:')) throw bad(`egress policy must be allow:LIST, learn or all, not ${JSON.stringify(text.slice(0, 80))}`);
  const list = t.slice('allow:'.length);
  if (!list.trim()) throw bad('allow: needs at least one entry');
  const entries = list.split(',').flatMap((e) => parseEntry(e, sources));
  return { mode: 'allow', entries, text: t };
}

export function policyText(p: EgressPolicy): string {
  return p.mode === 'allow' ? p.text : p.mode;
}

/** Proxied: every connection goes through the node (everything but `all`). */
export function isProxied(p: EgressPolicy): boolean {
  return p.mode !== 'all';
}

function portOk(ports: number[] | 'any', port: number): boolean {
  return ports === 'any' || ports.includes(port);
}

/** A name (or an IPv4 literal) and port against a policy. */
export function allows(p: EgressPolicy, host: string, port: number): boolean {
  if (p.mode !== 'allow') return true;
  const ip = parseIPv4(host);
  // A name as the environment sent it (SNI, Host, CONNECT) is judged only once it is a real
  // host name: `evil.com\0.github.com` or `evil.com%2e.github.com` is none, and passes nothing.
  const name = ip === null ? canonicalName(host) : null;
  if (ip === null && name === null) return false;
  for (const e of p.entries) {
    if (!portOk(e.ports, port)) continue;
    if (ip !== null) {
      if (e.kind !== 'cidr') continue;
      const mask = e.bits === 0 ? 0 : (0xffffffff << (32 - e.bits)) >>> 0;
      if ((ip & mask) >>> 0 === e.base) return true;
    } else if (e.kind === 'name' && e.name === name) return true;
    else if (e.kind === 'suffix' && name!.endsWith(`.${e.suffix}`)) return true;
  }
  return false;
}

/** DNS answers a name when some entry names it, whatever the port. */
export function allowsName(p: EgressPolicy, name: string): boolean {
  if (p.mode !== 'allow') return true;
  const n = canonicalName(name);
  if (n === null) return false;
  return p.entries.some((e) => (e.kind === 'name' && e.name === n) || (e.kind === 'suffix' && n.endsWith(`.${e.suffix}`)));
}

/**
 * The least-privilege allow list for what was reached: one `name:port` entry per destination,
 * except that a destination one of the presets names is covered by that preset's name (the
 * presets are small and their names are what a reader expects).
 */
export function suggestPolicy(reached: Array<{ host: string; port: number }>, sources: PresetSources): string | null {
  const presets = PRESET_NAMES.map((n) => ({ n, p: parseEgressPolicy(`allow:${n}`, sources) })).filter(
    (x): x is { n: string; p: Extract<EgressPolicy, { mode: 'allow' }> } => x.p.mode === 'allow',
  );
  const used = new Set<string>();
  const entries = new Set<string>();
  for (const { host, port } of [...reached].sort((a, b) => a.host.localeCompare(b.host) || a.port - b.port)) {
    const preset = presets.find((x) => x.p.entries.some((e) => e.kind === 'name' && e.name === host && portOk(e.ports, port)));
    if (preset) used.add(preset.n);
    else entries.add(`${host}:${port}`);
  }
  const all = [...[...used].sort(), ...entries];
  return all.length ? `allow:${all.join(',')}` : null;
}

// ---- budgets ---------------------------------------------------------------------------

export interface Budget {
  /** Bytes in and out through the proxy, all destinations together. */
  egressBytes?: number;
  /** CPU time of the container, in seconds. */
  cpuSeconds?: number;
}

const SIZE: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const TIME: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

function badBudget(message: string): BerthError {
  return new BerthError('invalid_budget', message, 'write it as egress=500MB,cpu=2h');
}

/** `egress=500MB,cpu=2h` (either or both). */
export function parseBudget(text: string): Budget {
  const out: Budget = {};
  if (!text.trim()) throw badBudget('an empty budget');
  for (const part of text.split(',')) {
    const m = /^\s*(egress|cpu)=([\d.]+)\s*([a-zA-Z]*)\s*$/.exec(part);
    if (!m) throw badBudget(`bad budget ${JSON.stringify(part.trim())}`);
    const n = Number(m[2]);
    const unit = m[3]!.toLowerCase();
    if (!Number.isFinite(n) || n <= 0) throw badBudget(`a budget must be positive: ${part.trim()}`);
    if (m[1] === 'egress') {
      const mult = SIZE[unit];
      if (mult === undefined) throw badBudget(`unknown size unit ${m[3]} (B, KB, MB, GB, TB, KiB, MiB, GiB)`);
      out.egressBytes = Math.round(n * mult);
    } else {
      const mult = TIME[unit || 's'];
      if (mult === undefined) throw badBudget(`unknown time unit ${m[3]} (s, m, h, d)`);
      out.cpuSeconds = n * mult;
    }
  }
  return out;
}

export function formatBytes(n: number): string {
  if (n < 1e3) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1e3 && i < units.length - 1) {
    v /= 1e3;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
