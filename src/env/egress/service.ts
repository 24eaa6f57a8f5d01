// Egress on the node: each environment's policy and budget, the proxy's and DNS responder's
// listeners, the kernel rules that send an environment's traffic to them, the record of every
// destination, and the budget checks that pause an environment that overspends.
import { readFile } from 'node:fs/promises';
import net, { type Server, type Socket } from 'node:net';
import type { BudgetInfo, EgressDenial, EgressReport, EgressSummary } from '../../core/api.js';
import {
  allows,
  allowsName,
  isProxied,
  parseBudget,
  parseEgressPolicy,
  policyText,
  suggestPolicy,
  type Budget,
  type EgressPolicy,
  type PresetSources,
} from '../../core/egress-policy.js';
import { BerthError } from '../../core/errors.js';
import type { EventInput } from '../../core/events.js';
import type { DestinationRow, EgressStore } from '../../state/egress-store.js';
import { DnsResponder } from './dns-responder.js';
import { clientAddress, handleConnection, type ListenerKind, type LiveConn, type ProxiedEnv } from './proxy.js';
import { EgressResolver } from './resolver.js';
import { EgressRules, type Listeners } from './rules.js';

const RECENT_DENIALS = 20;
const DENIAL_EVENT_EVERY_MS = 10_000;

export interface EgressParts {
  nodeId: string;
  home: string;
  store: EgressStore;
  sources: () => PresetSources;
  emit: (e: EventInput) => void;
  log: (line: string) => void;
  /** Pauses an environment that went over a budget. */
  pause: (envId: string, reason: string) => Promise<void>;
  cpuUsageNs: (envId: string) => Promise<number | null>;
}

interface EnvEgress extends ProxiedEnv {
  agent: string | null;
  policy: EgressPolicy;
  budget: Budget | null;
  usedBytes: number;
  usedCpuSeconds: number | null;
  address: { ip: string; gateway: string } | null;
  denials: EgressDenial[];
  lastDenialEvent: Map<string, number>;
  pending: Map<string, DestinationRow>;
  overBudget: boolean;
}

export class EgressService {
  private readonly envs = new Map<string, EnvEgress>();
  private readonly byIp = new Map<string, EnvEgress>();
  private readonly live = new Set<LiveConn>();
  private readonly servers: Server[] = [];
  private readonly dns: DnsResponder;
  private readonly rules: EgressRules;
  private readonly resolver: EgressResolver;
  private listeners: Listeners | null = null;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly p: EgressParts) {
    this.rules = new EgressRules(p.nodeId);
    this.resolver = new EgressResolver(p.home, () => [...this.envs.values()].flatMap((e) => (e.address ? [e.address.gateway] : [])));
    this.dns = new DnsResponder({
      decide: (ip, name) => {
        const e = this.byIp.get(ip);
        return e ? { env: e.name, allowed: allowsName(e.policy, name) } : null;
      },
      resolve: (name) => this.resolver.resolve(name),
      denied: (ip, name) => {
        const e = this.byIp.get(ip);
        if (e) this.deny(e, name, 53, 'dns', 'not in the allow list');
      },
    });
  }

  /** Parses a create request's policy and budget: throws before anything is made. */
  validate(egress: string | undefined, budget: string | undefined): { policy: EgressPolicy | null; budget: Budget | null } {
    return {
      policy: egress === undefined ? null : parseEgressPolicy(egress, this.p.sources()),
      budget: budget === undefined ? null : parseBudget(budget),
    };
  }

  private async listen(): Promise<Listeners> {
    if (this.listeners) return this.listeners;
    const tcp = async (kind: ListenerKind): Promise<number> => {
      const parts = {
        envFor: (ip: string) => this.byIp.get(ip) ?? null,
        resolve: (h: string) => this.resolver.resolve(h),
        originalDst: (s: Socket) => originalDst(s),
        refused: (ip: string) => this.resolver.refused(ip),
        denied: (env: ProxiedEnv, host: string, port: number, reason: string) => {
          const e = this.envs.get(env.id);
          if (e) this.deny(e, host, port, 'tcp', reason);
        },
        opened: (c: LiveConn) => this.live.add(c),
        closed: (c: LiveConn) => {
          this.count(c);
          this.live.delete(c);
        },
      };
      const server = net.createServer((s) => void handleConnection(parts, kind, s).catch(() => s.destroy()));
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '0.0.0.0', () => resolve()));
      this.servers.push(server);
      return (server.address() as net.AddressInfo).port;
    };
    const [http, tls, any, dns] = await Promise.all([tcp('http'), tcp('tls'), tcp('any'), this.dns.listen()]);
    this.listeners = { http, tls, any, dns };
    this.timers = [setInterval(() => this.tick(), 1000), setInterval(() => void this.cpuTick(), 2000)];
    for (const t of this.timers) t.unref();
    return this.listeners;
  }

  private load(id: string, name: string, agent: string | null): EnvEgress | null {
    const row = this.p.store.get(id);
    if (!row) return null;
    const policy = parseEgressPolicy(row.policy, this.p.sources());
    const e: EnvEgress = {
      id,
      name,
      agent,
      policy,
      policyText: policyText(policy),
      allows: (host, port) => allows(e.policy, host, port),
      budget: row.budget,
      usedBytes: row.used_bytes,
      usedCpuSeconds: null,
      address: null,
      denials: [],
      lastDenialEvent: new Map(),
      pending: new Map(),
      overBudget: false,
    };
    this.envs.set(id, e);
    return e;
  }

  /** Records a new environment's policy and budget (before its container exists). */
  register(env: { id: string; name: string; agent: string | null }, policy: EgressPolicy | null, budget: Budget | null): void {
    if (!policy && !budget) return;
    this.p.store.put({ env_id: env.id, policy: policyText(policy ?? { mode: 'all' }), budget, used_bytes: 0, cpu_base_ns: 0 });
    this.load(env.id, env.name, env.agent);
  }

  private proxied(e: EnvEgress): boolean {
    return isProxied(e.policy) || e.budget?.egressBytes !== undefined;
  }

  /**
   * After an environment's container started: its address gets the rules. Throws when they
   * cannot be put in place (the caller stops the container: fail closed).
   */
  async attach(env: { id: string; name: string; agent: string | null }, address: { ip: string; gateway: string } | null): Promise<void> {
    const e = this.envs.get(env.id) ?? this.load(env.id, env.name, env.agent);
    if (!e) return;
    e.name = env.name;
    if (this.proxied(e) && !address?.ip) throw new BerthError('internal', `environment ${env.name} has no address for its egress policy`);
    if (e.address) this.byIp.delete(e.address.ip);
    e.address = address;
    if (address) this.byIp.set(address.ip, e);
    await this.apply();
  }

  /** An environment removed: its rules go, its record with its row. */
  async detach(id: string): Promise<void> {
    const e = this.envs.get(id);
    if (!e) return;
    this.envs.delete(id);
    if (e.address && this.byIp.get(e.address.ip) === e) this.byIp.delete(e.address.ip);
    for (const c of this.live) if (c.env.id === id) c.client.destroy();
    await this.apply();
  }

  /** Once the node has reconciled its environments: rules left for none of them go. */
  async reconciled(): Promise<void> {
    const redirected = [...this.envs.values()].some((e) => e.address && this.proxied(e));
    if (!redirected && !this.listeners) await this.rules.clear();
  }

  private async apply(): Promise<void> {
    const redirected = [...this.envs.values()].filter((e) => e.address && this.proxied(e)).map((e) => e.address!);
    if (redirected.length === 0 && !this.listeners) return;
    const l = await this.listen();
    try {
      await this.rules.sync(redirected, l);
    } catch (err) {
      throw new BerthError(
        'engine_unavailable',
        `egress rules could not be applied: ${(err as Error).message}`,
        'fix the firewall (scripts/setup.sh does)',
      );
    }
  }

  /** A new policy for a running environment: new connections follow it, no restart. */
  async setPolicy(env: { id: string; name: string; agent: string | null }, text: string): Promise<EgressSummary> {
    const policy = parseEgressPolicy(text, this.p.sources());
    const row = this.p.store.get(env.id);
    this.p.store.put({
      env_id: env.id,
      policy: policyText(policy),
      budget: row?.budget ?? null,
      used_bytes: row?.used_bytes ?? 0,
      cpu_base_ns: 0,
    });
    const e = this.envs.get(env.id) ?? this.load(env.id, env.name, env.agent)!;
    e.policy = policy;
    e.policyText = policyText(policy);
    await this.apply();
    return this.summary(env)!;
  }

  /** Raises (or sets) budgets; a limit given replaces the one before. */
  async setBudget(env: { id: string; name: string; agent: string | null }, text: string): Promise<EgressSummary> {
    const add = parseBudget(text);
    const row = this.p.store.get(env.id);
    const budget = { ...(row?.budget ?? {}), ...add };
    this.p.store.put({ env_id: env.id, policy: row?.policy ?? 'all', budget, used_bytes: row?.used_bytes ?? 0, cpu_base_ns: 0 });
    const e = this.envs.get(env.id) ?? this.load(env.id, env.name, env.agent)!;
    e.budget = budget;
    e.overBudget = false;
    await this.apply();
    return this.summary(env)!;
  }

  /** Refuses to resume an environment still over a budget. */
  checkResume(id: string, name: string): void {
    const e = this.envs.get(id);
    const over = e && this.over(e);
    if (over) {
      throw new BerthError(
        'over_budget',
        `environment ${name} is over its ${over.kind} budget (${over.used} of ${over.limit})`,
        `raise it: \`berth resume ${name} --budget ${over.kind}=…\``,
      );
    }
  }

  private over(e: EnvEgress): { kind: 'egress' | 'cpu'; used: number; limit: number } | null {
    if (e.budget?.egressBytes !== undefined && e.usedBytes > e.budget.egressBytes)
      return { kind: 'egress', used: e.usedBytes, limit: e.budget.egressBytes };
    if (e.budget?.cpuSeconds !== undefined && e.usedCpuSeconds !== null && e.usedCpuSeconds > e.budget.cpuSeconds)
      return { kind: 'cpu', used: e.usedCpuSeconds, limit: e.budget.cpuSeconds };
    return null;
  }

  private deny(e: EnvEgress, host: string, port: number, via: 'tcp' | 'dns', reason: string): void {
    const at = new Date().toISOString();
    e.denials.push({ at, host, port, via, reason });
    if (e.denials.length > RECENT_DENIALS) e.denials.shift();
    if (via === 'tcp') this.note(e, host, port, false, 0, 0, true);
    const key = `${host}:${port}`;
    const last = e.lastDenialEvent.get(key) ?? 0;
    if (Date.now() - last >= DENIAL_EVENT_EVERY_MS) {
      e.lastDenialEvent.set(key, Date.now());
      this.p.emit({ type: 'egress.denied', env: e.name, agent: e.agent, host, port, via, policy: e.policyText });
    }
  }

  private note(e: EnvEgress, host: string, port: number, allowed: boolean, bytesIn: number, bytesOut: number, opened: boolean): void {
    const key = `${host}\0${port}\0${allowed}`;
    const now = new Date().toISOString();
    const d = e.pending.get(key) ?? { host, port, allowed, connections: 0, bytes_in: 0, bytes_out: 0, first_seen: now, last_seen: now };
    d.connections += opened ? 1 : 0;
    d.bytes_in += bytesIn;
    d.bytes_out += bytesOut;
    d.last_seen = now;
    e.pending.set(key, d);
    e.usedBytes += bytesIn + bytesOut;
  }

  /** Adds what a connection moved since it was last counted. */
  private count(c: LiveConn): void {
    const e = this.envs.get(c.env.id);
    const bytesOut = c.client.bytesRead - c.counted.out;
    const bytesIn = c.client.bytesWritten - c.counted.in;
    const first = !c.noted;
    c.noted = true;
    c.counted = { in: c.client.bytesWritten, out: c.client.bytesRead };
    if (e && (bytesIn || bytesOut || first)) this.note(e, c.host, c.port, true, bytesIn, bytesOut, first);
  }

  private tick(): void {
    for (const c of this.live) this.count(c);
    for (const e of this.envs.values()) {
      this.flush(e);
      this.enforce(e);
    }
  }

  private flush(e: EnvEgress): void {
    if (e.pending.size === 0) return;
    const deltas = [...e.pending.values()];
    e.pending.clear();
    try {
      this.p.store.flush(e.id, e.usedBytes, deltas);
    } catch (err) {
      this.p.log(`berth: egress record of ${e.name}: ${(err as Error).message}`);
    }
  }

  private enforce(e: EnvEgress): void {
    const over = this.over(e);
    if (!over || e.overBudget) return;
    e.overBudget = true;
    for (const c of this.live) if (c.env.id === e.id) c.client.destroy();
    this.p.emit({ type: 'budget.exceeded', env: e.name, agent: e.agent, kind: over.kind, used: over.used, limit: over.limit });
    this.p
      .pause(e.id, `over its ${over.kind} budget`)
      .catch((err: unknown) => this.p.log(`berth: pausing ${e.name}: ${(err as Error).message}`));
  }

  private async cpuTick(): Promise<void> {
    for (const e of this.envs.values()) {
      if (e.budget?.cpuSeconds === undefined) continue;
      const ns = await this.p.cpuUsageNs(e.id).catch(() => null);
      if (ns === null) continue;
      e.usedCpuSeconds = ns / 1e9;
      this.enforce(e);
    }
  }

  has(id: string): boolean {
    return this.envs.has(id) || this.p.store.get(id) !== undefined;
  }

  summary(env: { id: string; name: string; agent: string | null }): EgressSummary | null {
    const e = this.envs.get(env.id) ?? this.load(env.id, env.name, env.agent);
    if (!e) return null;
    const b = e.budget;
    const budget: BudgetInfo | null = b
      ? {
          egressBytes: b.egressBytes ?? null,
          cpuSeconds: b.cpuSeconds ?? null,
          usedBytes: e.usedBytes,
          usedCpuSeconds: e.usedCpuSeconds,
          leftBytes: b.egressBytes !== undefined ? Math.max(0, b.egressBytes - e.usedBytes) : null,
          leftCpuSeconds: b.cpuSeconds !== undefined && e.usedCpuSeconds !== null ? Math.max(0, b.cpuSeconds - e.usedCpuSeconds) : null,
        }
      : null;
    return { policy: e.policyText, mode: e.policy.mode, proxied: this.proxied(e), budget, recentDenials: [...e.denials] };
  }

  report(env: { id: string; name: string; agent: string | null }): EgressReport {
    const e = this.envs.get(env.id) ?? this.load(env.id, env.name, env.agent);
    if (e) {
      for (const c of this.live) if (c.env.id === e.id) this.count(c);
      this.flush(e);
    }
    const destinations = this.p.store.destinations(env.id).map((d) => ({
      host: d.host,
      port: d.port,
      allowed: d.allowed,
      connections: d.connections,
      bytesIn: d.bytes_in,
      bytesOut: d.bytes_out,
      firstSeen: d.first_seen,
      lastSeen: d.last_seen,
    }));
    const summary = this.summary(env) ?? { policy: 'all', mode: 'all' as const, proxied: false, budget: null, recentDenials: [] };
    const reached = destinations.filter((d) => d.allowed);
    return { env: env.name, ...summary, destinations, suggested: suggestPolicy(reached, this.p.sources()) };
  }

  close(): void {
    for (const c of this.live) this.count(c);
    for (const e of this.envs.values()) this.flush(e);
    for (const t of this.timers) clearInterval(t);
    for (const s of this.servers) s.close();
    for (const c of this.live) c.client.destroy();
    this.dns.close();
  }
}

/**
 * Where a connection redirected to the listener for any port was going: conntrack keeps the
 * original tuple of every NATed connection (/proc/net/nf_conntrack), matched here by the
 * reply tuple, which holds the client's address and port and this listener's port.
 */
export async function originalDst(s: Socket): Promise<{ ip: string; port: number } | null> {
  const ip = clientAddress(s);
  const want = ` src=${ip} dst=`;
  const reply = `sport=${s.localPort} dport=${s.remotePort} `;
  let text: string;
  try {
    text = await readFile('/proc/net/nf_conntrack', 'latin1');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    if (!line.includes(want) || !line.includes(reply) || !line.includes(' tcp ')) continue;
    const m = /src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/.exec(line);
    if (m && m[1] === ip && m[3] === String(s.remotePort) && m[7] === String(s.localPort) && m[8] === String(s.remotePort))
      return { ip: m[2]!, port: Number(m[4]) };
  }
  return null;
}
