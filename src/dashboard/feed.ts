// What the page shows, kept live: one card per environment on every node the dashboard knows,
// built from each node's list once and then from its event stream (never by polling the
// list). Details the events do not carry (services, ports, changed files) are read with
// `describe` when an event says they may have changed; CPU and memory are sampled with `stats`
// while a browser watches.
import type { EnvInfo } from '../core/api.js';
import type { BerthEvent } from '../core/events.js';
import { isOwnCommand } from './own-commands.js';
import { envKey, type Source, type Sources } from './sources.js';

const STATS_EVERY_MS = 5000;
const STATS_KEPT = 36;
const REFRESH_DEBOUNCE_MS = 800;
const LOG_TAIL = 1200;

export interface Card {
  key: string;
  node: string | null;
  name: string;
  info: EnvInfo;
  running: { command: string; argv: string[]; since: string } | null;
  last: { argv: string[]; exitCode: number; timedOut: boolean; durationMs: number; at: string; output: string | null } | null;
  services: Array<{ name: string; state: string; detail: string | null; ports: number[]; logTail: string | null }>;
  ports: number[];
  changed: Array<{ path: string; status: string }> | null;
  snapshots: { count: number; lastAt: string | null };
  /** CPU (as a share of one CPU) and memory (bytes), oldest first. */
  stats: Array<{ at: string; cpu: number | null; mem: number | null }>;
  memLimit: number | null;
  activity: string;
  /** Why it is gone (removed, vanished), once it is. */
  gone: string | null;
}

export type FeedMessage =
  | { type: 'hello'; cards: Card[]; nodes: NodeState[] }
  | { type: 'card'; card: Card }
  | { type: 'gone'; key: string; reason: string }
  | { type: 'nodes'; nodes: NodeState[] };

export interface NodeState {
  /** null for this node. */
  node: string | null;
  id: string | null;
  /** Why the node cannot be reached now; null while its event stream is open. */
  error: string | null;
}

/** Terminal output as plain text: escape sequences and control characters (but tabs and newlines) out. */
export function plain(text: string): string {
  return text
    .replace(/\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]/g, '')
    .replace(/\r\n/g, '\n')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

interface Running {
  argv: string[];
  since: string;
}

export class Feed {
  private readonly cards = new Map<string, Card>();
  private readonly commands = new Map<string, Map<string, Running>>();
  private readonly cpuSeen = new Map<string, { at: number; usage: number }>();
  private readonly subscribers = new Set<(m: FeedMessage) => void>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly nodes = new Map<string | null, { id: string | null; error: string | null }>();
  private readonly followed = new Set<string | null>();
  private readonly abort = new AbortController();
  private statsTimer: NodeJS.Timeout | undefined;
  private describing = 0;
  private readonly describeQueue: Array<() => void> = [];

  constructor(
    private readonly sources: Sources,
    private readonly log: (l: string) => void,
  ) {}

  /** Starts following every node; resolves once this node has been listed (other nodes come as they answer). */
  async start(): Promise<void> {
    const [local] = this.sources.all(this.log);
    this.followNew();
    await this.follow(local!);
    this.statsTimer = setInterval(() => void this.sampleStats(), STATS_EVERY_MS);
    this.statsTimer.unref();
  }

  subscribe(fn: (m: FeedMessage) => void): () => void {
    // A node added since (`berth node add`) shows from the next page that opens.
    this.followNew();
    this.subscribers.add(fn);
    fn(this.hello());
    if (this.subscribers.size === 1) void this.sampleStats();
    return () => this.subscribers.delete(fn);
  }

  hello(): Extract<FeedMessage, { type: 'hello' }> {
    return {
      type: 'hello',
      cards: [...this.cards.values()],
      nodes: this.nodeStates(),
    };
  }

  card(key: string): Card | undefined {
    return this.cards.get(key);
  }

  close(): void {
    this.abort.abort();
    clearInterval(this.statsTimer);
    for (const t of this.timers.values()) clearTimeout(t);
    this.subscribers.clear();
  }

  private send(m: FeedMessage): void {
    for (const s of this.subscribers) s(m);
  }

  private changed(c: Card): void {
    this.send({ type: 'card', card: c });
  }

  /** Every known node not followed yet (this one first, at start). */
  private followNew(): void {
    for (const s of this.sources.all(this.log)) {
      if (s.node === null || this.followed.has(s.node)) continue;
      this.followed.add(s.node);
      void this.follow(s);
    }
  }

  private setNode(source: Source, v: { id?: string | null; error: string | null }): void {
    const was = this.nodes.get(source.node);
    const next = { id: v.id ?? was?.id ?? null, error: v.error };
    if (was && was.id === next.id && was.error === next.error) return;
    this.nodes.set(source.node, next);
    if (next.error && next.error !== was?.error) this.log(`berth: dashboard: node ${source.node ?? '(this node)'}: ${next.error}`);
    this.send({ type: 'nodes', nodes: this.nodeStates() });
  }

  private nodeStates(): NodeState[] {
    return [...this.nodes].map(([node, v]) => ({ node, ...v }));
  }

  private async follow(source: Source): Promise<void> {
    const signal = this.abort.signal;
    try {
      const id = (await source.client.node(AbortSignal.any([signal, AbortSignal.timeout(10_000)]))).node;
      await this.relist(source);
      this.setNode(source, { id, error: null });
      await this.countSnapshots(source);
    } catch (err) {
      if (signal.aborted) return;
      this.setNode(source, { error: (err as Error).message });
    }
    void this.stream(source);
  }

  /** The node's list, put in place of what the page had of it: new cards, fresh ones, and the gone. */
  private async relist(source: Source): Promise<void> {
    const listed = await source.client.listEnvs(AbortSignal.any([this.abort.signal, AbortSignal.timeout(15_000)]));
    const keys = new Set<string>();
    for (const info of listed) {
      const c = this.put(source, info);
      keys.add(c.key);
      this.changed(c);
      this.scheduleDescribe(source, c.key, 0);
    }
    for (const c of [...this.cards.values()]) {
      if (c.node !== source.node || keys.has(c.key)) continue;
      this.cards.delete(c.key);
      this.send({ type: 'gone', key: c.key, reason: 'removed while its node was out of reach' });
    }
  }

  /**
   * The node's events, for as long as the dashboard runs. A node that drops is shown as out of
   * reach at once; when its stream opens again, its list is read afresh and the events it kept
   * meanwhile are replayed.
   */
  private async stream(source: Source): Promise<void> {
    const signal = this.abort.signal;
    let since: number | undefined;
    let down = this.nodes.get(source.node)?.error != null;
    const onConnection = (up: boolean, why?: Error): void => {
      if (!up) {
        down = true;
        this.setNode(source, { error: `lost its event stream (${why?.message ?? 'closed'}); trying again` });
        return;
      }
      if (!down) return;
      down = false;
      void this.relist(source).then(
        () => this.setNode(source, { error: null }),
        (err: unknown) => this.setNode(source, { error: (err as Error).message }),
      );
    };
    while (!signal.aborted) {
      try {
        for await (const e of source.client.events({ since, signal, onConnection })) {
          since = e.id;
          this.onEvent(source, e);
        }
      } catch (err) {
        if (signal.aborted) return;
        down = true;
        this.setNode(source, { error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, 2000).unref());
    }
  }

  private put(source: Source, info: EnvInfo): Card {
    const key = envKey(source.node, info.name);
    let c = this.cards.get(key);
    if (!c) {
      c = {
        key,
        node: source.node,
        name: info.name,
        info,
        running: null,
        last: null,
        services: [],
        ports: [],
        changed: null,
        snapshots: { count: 0, lastAt: null },
        stats: [],
        memLimit: null,
        activity: info.createdAt,
        gone: null,
      };
      this.cards.set(key, c);
      this.scheduleDescribe(source, key, 0);
    } else c.info = info;
    return c;
  }

  private async countSnapshots(source: Source): Promise<void> {
    try {
      for (const s of await source.client.snapshots(this.abort.signal)) {
        const c = s.env ? this.cards.get(envKey(source.node, s.env)) : undefined;
        if (!c) continue;
        c.snapshots.count++;
        if (!c.snapshots.lastAt || s.createdAt > c.snapshots.lastAt) c.snapshots.lastAt = s.createdAt;
      }
    } catch {
      /* a token that may not list snapshots: counts start at zero */
    }
  }

  private onEvent(source: Source, e: BerthEvent): void {
    if (!e.env) return;
    const key = envKey(source.node, e.env);
    const c = this.cards.get(key);
    if (e.type === 'env.removed') {
      if (!c) return;
      c.gone = 'removed';
      this.cards.delete(key);
      this.send({ type: 'gone', key, reason: e.snapshot ? `removed (its work is in snapshot ${e.snapshot})` : 'removed' });
      return;
    }
    if (!c) {
      void this.refreshInfo(source, e.env);
      return;
    }
    const own = isOwnCommand;
    switch (e.type) {
      case 'command.started': {
        if (own(e.argv)) return;
        const m = this.commands.get(key) ?? new Map<string, Running>();
        this.commands.set(key, m);
        m.set(e.command, { argv: e.argv, since: e.at });
        c.running = { command: e.command, argv: e.argv, since: e.at };
        break;
      }
      case 'command.ended': {
        const m = this.commands.get(key);
        const r = m?.get(e.command);
        if (!r) return;
        m!.delete(e.command);
        c.last = {
          argv: r.argv,
          exitCode: e.exitCode,
          timedOut: e.timedOut,
          durationMs: e.durationMs,
          at: e.at,
          output: e.outputTail ? plain(e.outputTail) : null,
        };
        const next = [...m!.entries()].pop();
        c.running = next ? { command: next[0], argv: next[1].argv, since: next[1].since } : null;
        this.scheduleDescribe(source, key);
        break;
      }
      case 'service.health': {
        const s = c.services.find((x) => x.name === e.service);
        if (s) {
          s.state = e.state;
          s.detail = e.detail;
        } else c.services.push({ name: e.service, state: e.state, detail: e.detail, ports: [], logTail: null });
        this.scheduleDescribe(source, key);
        break;
      }
      case 'snapshot.taken':
        c.snapshots.count++;
        c.snapshots.lastAt = e.at;
        break;
      case 'env.state':
        c.info = { ...c.info, state: e.state };
        if (e.state !== 'running') c.running = null;
        void this.refreshInfo(source, e.env);
        this.scheduleDescribe(source, key);
        break;
      default:
        // Status, takeover, hand-back and whatever else: the environment as the node has it now.
        void this.refreshInfo(source, e.env);
    }
    c.activity = e.at;
    this.changed(c);
  }

  private async refreshInfo(source: Source, name: string): Promise<void> {
    try {
      const info = await source.client.getEnv(name, this.abort.signal);
      this.changed(this.put(source, info));
    } catch {
      /* gone meanwhile: its env.removed event says so */
    }
  }

  private scheduleDescribe(source: Source, key: string, wait = REFRESH_DEBOUNCE_MS): void {
    if (this.timers.has(key)) return;
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.queued(() => this.describe(source, key));
    }, wait);
    t.unref();
    this.timers.set(key, t);
  }

  /** At most four describes at once, so a burst of events (or 50 new cards) cannot swamp a node. */
  private queued(job: () => Promise<void>): void {
    const run = (): void => {
      this.describing++;
      void job().finally(() => {
        this.describing--;
        this.describeQueue.shift()?.();
      });
    };
    if (this.describing < 4) run();
    else this.describeQueue.push(run);
  }

  private async describe(source: Source, key: string): Promise<void> {
    const c = this.cards.get(key);
    if (!c || c.info.state !== 'running') return;
    try {
      const d = await source.client.describe(c.name, AbortSignal.any([this.abort.signal, AbortSignal.timeout(15_000)]));
      c.services = (d.services ?? []).map((s) => ({
        name: s.name,
        state: s.state,
        detail: s.reason ?? s.check?.detail ?? null,
        ports: s.ports,
        logTail: s.logTail ? s.logTail.slice(-LOG_TAIL) : null,
      }));
      c.ports = [...new Set((d.ports ?? []).map((p) => p.port))].sort((a, b) => a - b);
      c.changed = d.git?.dirty ?? null;
      c.memLimit = d.resources?.memory.limitBytes ?? null;
      this.changed(c);
    } catch {
      /* paused or gone meanwhile; the next event tries again */
    }
  }

  private async sampleStats(): Promise<void> {
    if (this.subscribers.size === 0) return;
    const running = [...this.cards.values()].filter((c) => c.info.state === 'running');
    for (let i = 0; i < running.length; i += 8) {
      await Promise.all(running.slice(i, i + 8).map((c) => this.sampleOne(c)));
    }
  }

  private async sampleOne(c: Card): Promise<void> {
    try {
      const { source, name } = this.sources.resolve(c.key);
      const s = await source.client.stats(name, AbortSignal.any([this.abort.signal, AbortSignal.timeout(5000)]));
      const now = Date.parse(s.at);
      const usage = s.cpu.usageSeconds;
      const prev = this.cpuSeen.get(c.key);
      let cpu: number | null = null;
      if (usage !== null) {
        if (prev && now > prev.at) cpu = Math.max(0, (usage - prev.usage) / ((now - prev.at) / 1000));
        this.cpuSeen.set(c.key, { at: now, usage });
      }
      c.stats.push({ at: s.at, cpu, mem: s.memory.usedBytes });
      if (c.stats.length > STATS_KEPT) c.stats.splice(0, c.stats.length - STATS_KEPT);
      c.memLimit = s.memory.limitBytes ?? c.memLimit;
      this.changed(c);
    } catch {
      /* paused, gone, or an older node without stats */
    }
  }
}
