// The TypeScript SDK: `import { Berth } from 'berth'`. A thin layer over the one client of the
// node API, with the verbs of the CLI.
import { resolve as resolvePath } from 'node:path';
import type { SecretInfo, SecretSetRequest } from '../core/secrets.js';
import { NodeClient } from '../client/client.js';
import type { CreateEnvRequest, EnvInfo, Limits, NetworkMode, PoolInfo, PoolRequest, SnapshotInfo } from '../core/api.js';
import { typedError } from '../core/errors.js';
import type { BerthEvent } from '../core/events.js';
import type { TokenCreated, TokenInfo } from '../core/tokens.js';
import { localSocketPath } from '../core/home.js';
import { isRemoteRepo } from '../core/repo.js';
import { connectLocal } from './connect.js';
import { clientFor } from './nodes.js';
import { Environment } from './environment.js';
import { forkMany } from './forks.js';

export interface ConnectOptions {
  /** A remote node: http(s)://HOST:PORT (or tcp:// / tls://), with its token. */
  url?: string;
  token?: string;
  /** PEM certificate(s) to trust for an https node. */
  ca?: string | Buffer;
  /** The local node's unix socket (default: $BERTH_HOME/berth.sock). */
  socketPath?: string;
  /** Start a local daemon when none answers (default true, unless BERTH_NO_AUTOSTART=1). */
  autostart?: boolean;
}

export interface CreateOptions {
  name: string;
  repo?: string;
  ref?: string;
  toolchain?: string;
  agent?: string;
  task?: string;
  network?: NetworkMode;
  /** The egress policy: `allow:npm,github,api.example.com:443`, `learn` or `all` (docs/egress.md). */
  egress?: string;
  /** Budgets, `egress=500MB,cpu=2h`: over one, the environment is paused with an event. */
  budget?: string;
  limits?: Partial<Limits>;
  /** Trust the node's CA bundle (default true). */
  trust?: boolean;
  snapshot?: string;
  identity?: string;
  ttlSeconds?: number;
  idleTtlSeconds?: number;
  /** Never claim a pre-warmed environment. */
  noPool?: boolean;
  /** Secrets by name: the environment gets each one's variable, holding a placeholder. */
  secrets?: string[];
  signal?: AbortSignal;
}

function tcpToHttp(url: string): string {
  return url.replace(/^tcp:/, 'http:').replace(/^tls:/, 'https:');
}

export class Berth {
  private readonly remotes = new Map<string, NodeClient>();

  private constructor(
    /** The one client of the node API this SDK talks through. */
    readonly client: NodeClient,
  ) {}

  /** The local node (started when absent), or a remote one with `{ url, token, ca }`. */
  static async connect(opts: ConnectOptions = {}): Promise<Berth> {
    if (opts.url) {
      const client = new NodeClient({ url: tcpToHttp(opts.url), token: opts.token, ca: opts.ca });
      await client.node(AbortSignal.timeout(10_000));
      return new Berth(client);
    }
    // A socket named, and not the local node's own (or no daemon is to be started): that socket.
    if (opts.socketPath && (opts.socketPath !== localSocketPath() || opts.autostart === false)) {
      const client = new NodeClient({ socketPath: opts.socketPath, token: opts.token });
      await client.node(AbortSignal.timeout(10_000));
      return new Berth(client);
    }
    const client = await connectLocal({ autostart: opts.autostart !== false, quiet: true });
    if (!opts.token) return new Berth(client);
    // The node answers; the token's own client replaces the one that checked (its sockets closed).
    client.close();
    const scoped = new NodeClient({ socketPath: localSocketPath(), token: opts.token });
    await scoped.node(AbortSignal.timeout(10_000));
    return new Berth(scoped);
  }

  /** A new environment (claimed from a warm pool when one matches). */
  async create(opts: CreateOptions): Promise<Environment> {
    const req: CreateEnvRequest = {
      name: opts.name,
      repo: this.repoPath(opts.repo),
      ref: opts.ref,
      toolchain: opts.toolchain,
      agent: opts.agent,
      task: opts.task,
      network: opts.network,
      egress: opts.egress,
      budget: opts.budget,
      limits: opts.limits,
      ...(opts.trust === false ? { inheritTrust: false } : {}),
      snapshot: opts.snapshot,
      identity: opts.identity,
      ttlSeconds: opts.ttlSeconds,
      idleTtlSeconds: opts.idleTtlSeconds,
      noPool: opts.noPool,
      ...(opts.secrets?.length ? { secrets: opts.secrets } : {}),
    };
    const info = await this.client.createEnv(req, opts.signal);
    return new Environment(this.client, info.name, info);
  }

  /**
   * A path names a directory as this program sees it, as on the command line: relative to its
   * working directory when the node is local (a remote node's paths are its own).
   */
  private repoPath(repo: string | undefined): string | undefined {
    if (repo === undefined || isRemoteRepo(repo) || !this.client.target.startsWith('unix://')) return repo;
    return resolvePath(repo);
  }

  /** `ENV` on this node, or `NODE/ENV` on a node added with `berth node add`. */
  async get(name: string, signal?: AbortSignal): Promise<Environment> {
    const { client, env } = this.resolve(name);
    return new Environment(client, env, await client.getEnv(env, signal));
  }

  list(signal?: AbortSignal): Promise<EnvInfo[]> {
    return this.client.listEnvs(signal);
  }

  /** A new environment from a snapshot: the work, on the same commit and toolchain. */
  async fork(snapshot: string | SnapshotInfo, name: string, opts: Omit<CreateOptions, 'name' | 'snapshot'> = {}): Promise<Environment> {
    return this.create({ ...opts, name, snapshot: typeof snapshot === 'string' ? snapshot : snapshot.id });
  }

  /** Several forks of one snapshot at once: all of them are made, or none is. */
  async forkMany(
    snapshot: string | SnapshotInfo,
    names: string[],
    opts: Omit<CreateOptions, 'name' | 'snapshot'> = {},
  ): Promise<Environment[]> {
    const id = typeof snapshot === 'string' ? snapshot : snapshot.id;
    const envs = await forkMany(this.client, id, names, { agent: opts.agent, task: opts.task });
    return envs.map((e) => new Environment(this.client, e.name, e));
  }

  snapshots(signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return this.client.snapshots(signal);
  }

  /** Live events, from after `since` when given; a dropped connection resumes where it was. */
  events(opts: { env?: string; since?: number; signal?: AbortSignal } = {}): AsyncIterable<BerthEvent> {
    return this.client.events(opts);
  }

  readonly pools = {
    set: (req: PoolRequest): Promise<PoolInfo> => this.client.setPool(req),
    list: (): Promise<PoolInfo[]> => this.client.pools(),
  };

  readonly tokens = {
    create: (req: { agent: string; envs?: string[]; readOnly?: boolean; ttlSeconds?: number }): Promise<TokenCreated> =>
      this.client.createToken(req),
    list: (): Promise<TokenInfo[]> => this.client.tokens(),
    remove: (id: string): Promise<{ removed: string }> => this.client.removeToken(id),
  };

  /** Values the node swaps in on the wire for one host; environments see only placeholders. */
  readonly secrets = {
    set: (name: string, req: SecretSetRequest): Promise<SecretInfo> => this.client.setSecret(name, req),
    list: (): Promise<SecretInfo[]> => this.client.secrets(),
    remove: (name: string): Promise<{ removed: string }> => this.client.removeSecret(name),
  };

  private resolve(name: string): { client: NodeClient; env: string } {
    const slash = name.indexOf('/');
    if (slash < 0) return { client: this.client, env: name };
    const node = name.slice(0, slash);
    const env = name.slice(slash + 1);
    if (!node || !env || env.includes('/'))
      throw typedError('invalid_name', `invalid environment name ${JSON.stringify(name)}`, 'use ENV or NODE/ENV');
    let c = this.remotes.get(node);
    if (!c) this.remotes.set(node, (c = clientFor(node)));
    return { client: c, env };
  }

  close(): void {
    this.client.close();
    for (const c of this.remotes.values()) c.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
