// The environment manager: lifecycle (create, list, remove), exec through each
// environment's agent, describe, and reconciliation with the engine after a restart.
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CreateEnvRequest, EnvInfo, EnvState, Isolation, Limits, NetworkMode } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { decodeIdentity, encodeIdentity, identityHash, type Identity } from '../core/identity.js';
import { validateEnvName, validateLabel } from '../core/names.js';
import { failpoint } from '../core/failpoint.js';
import { AgentConnection, AgentGoneError } from '../agent/client.js';
import type { ContainerSpec, Engine, IdMap, Mount } from '../engine/engine.js';
import type { EnvRow, StateDb } from '../state/state-db.js';
import { defaultToolchainDigest } from '../toolchain/base-image.js';
import { checkoutWorkspace, resolveRepo } from '../workspace/git.js';
import { cacheKeyDigest, cacheKeysAt, cacheTarget, cacheVolumeName } from '../workspace/cache-keys.js';
import type { BlobStore } from '../workspace/blob-store.js';
import { isSubvolumeSync } from '../workspace/btrfs.js';
import { applyToFreshWorkspace, loadManifest, verifyBlobs, type SnapshotManifest } from '../workspace/snapshot.js';
import type { EventBus } from './event-bus.js';
import { ExecStats } from './exec-stats.js';
import { supervisionOf } from './supervision.js';
import type { FirewallResult } from './firewall.js';
import type { AgentChannel, Isolation as NetworkIsolation, WorkspaceProvisioner } from '../engine/backend.js';
import { HostWorkspaces, iptablesIsolation, UnixSocketChannel } from './local-backend.js';
import { debianMirrorEntries } from '../core/egress-policy.js';
import { EgressStore } from '../state/egress-store.js';
import { readAptSources } from '../toolchain/base-image.js';
import { EgressService } from './egress/service.js';
import { CA_PATH_IN_ENV, trustEnv, type NodeConfig } from './node-config.js';
import type { NodeSecrets } from './secrets/node-secrets.js';
import { ownTree } from './userns.js';

export const LABEL = {
  managed: 'org.berth.managed',
  node: 'org.berth.node',
  env: 'org.berth.env',
  name: 'org.berth.name',
  agent: 'org.berth.agent',
  task: 'org.berth.task',
  isolation: 'org.berth.isolation',
} as const;

const AGENT_SOCKET_IN_ENV = '/.berth/run/agent.sock';

export interface ManagerOptions {
  config: NodeConfig;
  engine: Engine;
  engineName: string;
  db: StateDb;
  store: BlobStore;
  events: EventBus;
  log: (line: string) => void;
  /** Secrets the node swaps in on the wire; environments hold placeholders. */
  secrets?: NodeSecrets;
  /** The backend's ports (src/engine/backend.ts); a local node's by default. */
  backend?: {
    agentChannel?: (row: EnvRow) => AgentChannel;
    workspaces?: WorkspaceProvisioner;
    isolation?: NetworkIsolation;
  };
}

export class EnvManager {
  private readonly agents = new Map<string, Promise<AgentConnection>>();
  private networkReady: Promise<FirewallResult> | undefined;
  private readonly creating = new Map<string, AbortController>();
  readonly stats = new ExecStats();
  /** When each environment last ran a command (flushed to the database now and then). */
  readonly lastUsed = new Map<string, number>();

  /** Egress policies and budgets (src/env/egress). */
  readonly egress: EgressService;

  private readonly workspaces: WorkspaceProvisioner;
  private readonly netIsolation: NetworkIsolation;
  private readonly agentChannel: (row: EnvRow) => AgentChannel;

  constructor(private readonly o: ManagerOptions) {
    this.workspaces = o.backend?.workspaces ?? new HostWorkspaces(o.config.cow);
    this.netIsolation = o.backend?.isolation ?? iptablesIsolation;
    this.agentChannel = o.backend?.agentChannel ?? ((row) => new UnixSocketChannel(join(row.dir, 'run', 'agent.sock')));
    this.egress = new EgressService({
      nodeId: o.config.nodeId,
      home: o.config.home,
      store: new EgressStore(o.db.sqlite),
      sources: () => ({ debianMirrors: debianMirrorEntries(readAptSources().map((s) => s.uri)) }),
      emit: (e) => void o.events.emit(e),
      log: o.log,
      pause: (id, reason) => this.pauseById(id, reason),
      cpuUsageNs: async (id) => {
        const row = o.db.envById(id);
        return row?.container_id && row.state === 'running' ? o.engine.cpuUsageNs(row.container_id) : null;
      },
    });
  }

  get config(): NodeConfig {
    return this.o.config;
  }

  // ---- lifecycle ---------------------------------------------------------------------

  async create(req: CreateEnvRequest, signal?: AbortSignal, internal: { poolId?: string } = {}): Promise<EnvInfo> {
    const name = validateEnvName(req.name);
    const agent = validateLabel('agent', req.agent);
    const task = validateLabel('task', req.task);
    const network: NetworkMode = req.network ?? 'egress';
    const limits: Limits = { ...this.o.config.defaultLimits, ...(req.limits ?? {}) };
    const secrets = this.prepareSecrets(req);
    // A secret is swapped in by the egress proxy: an environment with one always runs behind it
    // (under its policy, or under learn, which allows everything, when it has none).
    const egressText = secrets && (req.egress === undefined || req.egress.trim() === 'all') ? 'learn' : req.egress;
    const egress = this.egress.validate(egressText, req.budget);
    if (network === 'none' && ((egress.policy && egress.policy.mode !== 'all') || egress.budget?.egressBytes !== undefined)) {
      throw new BerthError('usage', 'an egress policy or egress budget needs --network egress', 'drop --network none, or the policy');
    }
    if (this.o.db.envByName(name)) {
      throw new BerthError(
        'already_exists',
        `environment ${name} already exists`,
        `pick another name, or remove it with \`berth rm ${name}\``,
      );
    }
    // Where it starts from: an identity, a snapshot, or a repository and ref.
    let repo = req.repo;
    let ref = req.ref;
    let toolchainRef = req.toolchain;
    let snapshotId = req.snapshot;
    if (req.identity) {
      const id = decodeIdentity(req.identity);
      repo = id.repo;
      ref = id.ref;
      toolchainRef = id.toolchain;
      snapshotId = id.snapshot;
    }
    let snapshot: { id: string; manifest: SnapshotManifest; blobs: Map<string, Buffer> } | undefined;
    if (snapshotId && !/^sha256:[0-9a-f]{64}$/.test(snapshotId)) {
      const want = snapshotId.startsWith('sha256:') ? snapshotId : `sha256:${snapshotId}`;
      const matches = this.o.db.snapshots().filter((s) => s.id.startsWith(want));
      if (matches.length === 1) snapshotId = matches[0]!.id;
      else if (matches.length > 1)
        throw new BerthError('invalid_request', `snapshot prefix ${snapshotId} is ambiguous`, 'give more digits');
    }
    if (snapshotId) {
      const known = this.o.db.snapshot(snapshotId);
      const manifest = loadManifest(this.o.store, snapshotId);
      // Every blob is checked against its hash before anything is made.
      snapshot = { id: snapshotId, manifest, blobs: verifyBlobs(this.o.store, manifest) };
      ref = manifest.base;
      if (known) {
        repo = req.identity ? repo : known.repo;
        toolchainRef ??= known.toolchain;
      }
    }
    if (!repo) throw new BerthError('usage', 'a repository is required', 'give --repo PATH|URL');
    toolchainRef ??= defaultToolchainDigest() ?? undefined;
    if (!toolchainRef) {
      throw new BerthError('image_missing', 'this node has no toolchain image yet', 'build one with `berth toolchain build`');
    }
    const image = await this.o.engine.inspectImage(toolchainRef, signal);
    if (!image) {
      throw new BerthError(
        'image_missing',
        `toolchain image ${toolchainRef} is not on this node`,
        'build it with `berth toolchain build`, or give --toolchain',
      );
    }
    const resolved = await resolveRepo(repo, ref, this.o.config.cacheRoot, signal);
    const cacheKeys = await cacheKeysAt(resolved.mirror, resolved.commit);

    // A warm environment from a pool, when one matches and nothing is customized.
    const customLimits = Object.keys(req.limits ?? {}).length > 0;
    const plain =
      !snapshot &&
      !internal.poolId &&
      !req.noPool &&
      network === 'egress' &&
      (req.isolation ?? this.o.config.isolation) === this.o.config.isolation &&
      !customLimits &&
      req.inheritTrust !== false &&
      !egress.policy &&
      !egress.budget &&
      !secrets;
    if (plain) {
      const claimed = await this.claim(image.id, resolved.repo, resolved.commit, cacheKeys, { name, agent, task, req });
      if (claimed) return claimed;
    }

    const id = randomBytes(6).toString('hex');
    const dir = join(this.o.config.workRoot, 'envs', id);
    const now = new Date().toISOString();
    const row: EnvRow = {
      id,
      name,
      state: 'creating',
      repo: resolved.repo,
      ref: ref ?? 'HEAD',
      commit_sha: resolved.commit,
      toolchain: image.id,
      container_id: null,
      engine: this.o.engineName,
      network,
      limits,
      agent: agent ?? null,
      task: task ?? null,
      dir,
      trust: req.inheritTrust !== false && this.o.config.caBundle !== null,
      created_at: now,
      snapshot: snapshot?.id ?? null,
      cache_keys: cacheKeys,
      pool_id: internal.poolId ?? null,
      ttl_s: req.ttlSeconds ?? null,
      idle_ttl_s: req.idleTtlSeconds ?? null,
      last_used_at: now,
      upstream: req.upstream ? JSON.stringify(req.upstream) : null,
      placement: req.placement ? JSON.stringify(req.placement) : null,
    };
    // The row goes in first, marked `creating`: a daemon killed from here on leaves a row
    // that the next start recognizes and cleans up together with whatever it points at.
    if (!this.o.db.insertEnv(row)) {
      throw new BerthError(
        'already_exists',
        `environment ${name} already exists`,
        `pick another name, or remove it with \`berth rm ${name}\``,
      );
    }
    secrets?.commit(id);
    const abort = new AbortController();
    this.creating.set(id, abort);
    const sig = signal ? AbortSignal.any([signal, abort.signal]) : abort.signal;
    try {
      this.egress.register(row, egress.policy, egress.budget);
      await failpoint('create:after-row');
      mkdirSync(join(dir, 'run'), { recursive: true, mode: 0o700 });
      // gVisor runs its own kernel over the host's; this runsc takes no uid mapping.
      const isolation = req.isolation ?? this.o.config.isolation;
      const ids = isolation === 'gvisor' ? null : await this.idMap(sig);
      if (ids) chownSync(join(dir, 'run'), ids.uid, ids.gid);
      const ws = join(dir, 'workspace');
      // The snapshot's tree, when this node kept one: the whole workspace, ignored files too.
      const tree = snapshot ? this.treePath(snapshot.id) : undefined;
      const fromTree = !!tree && existsSync(tree);
      const makeContainer = async (): Promise<string> => {
        if (network === 'egress') await this.ensureNetwork(sig);
        const volumes = await this.ensureCaches(cacheKeys, sig);
        const cid = await this.o.engine.createContainer(this.containerSpec(row, resolved.mirror, volumes, ids, isolation), sig);
        this.o.db.updateEnv(id, { container_id: cid });
        return cid;
      };
      let containerId: string;
      if (fromTree) {
        // In constant time on copy-on-write storage; a copy elsewhere. Before the container is
        // made: an engine may create a bind mount's missing source itself.
        await this.workspaces.cloneTree(tree, ws, sig);
        containerId = await makeContainer();
      } else {
        // The container is made while the workspace is checked out: the bind mount only needs
        // the directory to exist.
        await this.workspaces.create(ws);
        const [checkout, made] = await Promise.allSettled([
          checkoutWorkspace(resolved, ws, `berth/${name}`, sig).then(() => {
            if (snapshot) applyToFreshWorkspace(ws, snapshot.manifest, snapshot.blobs);
          }),
          makeContainer(),
        ]);
        if (checkout.status === 'rejected') throw checkout.reason;
        if (made.status === 'rejected') throw made.reason;
        containerId = made.value;
      }
      // Root inside is an unprivileged uid on the host: it owns its workspace, nothing else.
      await ownTree(ws, ids, sig);
      await failpoint('create:after-container');
      await this.startContainer(row, containerId, sig);
      const conn = await this.connectAgent(row, containerId, sig);
      if (fromTree) {
        // The tree carries its source's branch name; this environment gets its own.
        const r = await conn.request({ op: 'exec', argv: ['git', 'branch', '-M', `berth/${name}`] });
        if (!r.ok || r.exec?.exitCode !== 0)
          throw new BerthError('internal', `could not name ${name}'s branch (git exited ${r.exec?.exitCode ?? r.error?.message})`);
      }
      await failpoint('create:after-agent');
      const state = internal.poolId ? 'pooled' : 'running';
      this.o.db.updateEnv(id, { state });
      if (!internal.poolId) this.o.events.emit({ type: 'env.created', env: name, agent: row.agent, state, fromPool: false });
      return this.info({ ...row, state, container_id: containerId });
    } catch (err) {
      await this.destroy({ ...row, container_id: this.o.db.envById(id)?.container_id ?? null }).catch(() => {});
      if (sig.aborted && !(err instanceof BerthError)) throw new BerthError('interrupted', `creating ${name} was cancelled`);
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  /** Shared cache volumes for this environment's lockfiles. */
  private async ensureCaches(keys: Record<string, string>, signal?: AbortSignal): Promise<Array<{ name: string; target: string }>> {
    const out: Array<{ name: string; target: string }> = [];
    for (const [kind, key] of Object.entries(keys)) {
      const target = cacheTarget(kind);
      if (!target) continue;
      const name = cacheVolumeName(kind, key);
      await this.o.engine.ensureVolume(name, { [LABEL.managed]: 'true', 'org.berth.cache': kind }, signal);
      out.push({ name, target });
    }
    return out;
  }

  /** Takes a warm environment from a matching pool, atomically; undefined when none is warm. */
  private async claim(
    toolchain: string,
    repo: string,
    commit: string,
    cacheKeys: Record<string, string>,
    who: { name: string; agent: string | undefined; task: string | undefined; req: CreateEnvRequest },
  ): Promise<EnvInfo | undefined> {
    const pool = this.o.db.findPool(toolchain, repo, commit, cacheKeyDigest(cacheKeys));
    if (!pool) return undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const row = this.o.db.claimPooled(pool.id, {
        name: who.name,
        agent: who.agent ?? null,
        task: who.task ?? null,
        ttl_s: who.req.ttlSeconds ?? null,
        idle_ttl_s: who.req.idleTtlSeconds ?? null,
      });
      this.onPoolChange?.();
      if (!row) return undefined;
      await failpoint('claim:after-claim');
      try {
        // The branch carries the environment's name, as if it had been made for it.
        const { conn } = await this.agentFor(row.name);
        const r = await conn.request({ op: 'exec', argv: ['git', 'branch', '-m', `berth/${row.name}`] });
        if (!r.ok || r.exec?.exitCode !== 0) throw new Error('branch rename failed');
        this.lastUsed.set(row.id, Date.now());
        this.o.events.emit({ type: 'env.created', env: row.name, agent: row.agent, state: row.state, fromPool: true });
        return this.info(row);
      } catch {
        // A pooled environment that died while waiting: drop it and try the next.
        await this.destroy(row).catch(() => {});
      }
    }
    return undefined;
  }

  /** Called when pools may need refilling. */
  onPoolChange: (() => void) | undefined;

  private idMapping: Promise<IdMap | null> | undefined;

  /**
   * The host range root in an environment maps to: the one a remapping daemon chose (dockerd's
   * userns-remap), else the node's own on an engine that maps per container (Podman), else
   * none (a Docker daemon without userns-remap: said once in the log).
   */
  idMap(signal?: AbortSignal): Promise<IdMap | null> {
    const next = (this.idMapping ??= (async () => {
      const remap = await this.o.engine.remappedRoot(signal);
      if (remap) return remap;
      if (this.o.engineName === 'podman') return this.o.config.userns;
      this.o.log('berth: the Docker daemon does not remap user namespaces (userns-remap): root in an environment is root on the host');
      return null;
    })());
    next.catch(() => {
      if (this.idMapping === next) this.idMapping = undefined;
    });
    return next;
  }

  private containerSpec(
    row: EnvRow,
    mirror: string,
    volumes: Array<{ name: string; target: string }>,
    ids: IdMap | null,
    isolation: Isolation,
  ): ContainerSpec {
    const c = this.o.config;
    const mounts: Mount[] = [
      { source: join(row.dir, 'workspace'), target: '/workspace', readOnly: false },
      { source: join(row.dir, 'run'), target: '/.berth/run', readOnly: false },
      { source: c.agentDir, target: '/.berth/agent', readOnly: true },
      { source: c.nodeBinary, target: '/.berth/bin/node', readOnly: true },
      // Workspaces borrow the mirror's objects (git alternates) at the same path.
      { source: mirror, target: mirror, readOnly: true },
    ];
    const env: Record<string, string> = {
      BERTH_ENV: row.name,
      BERTH_ENV_ID: row.id,
      HOME: '/root',
      ...c.proxyEnv,
    };
    const secretVars = this.o.secrets?.vault.varsOf(row.id) ?? {};
    const bundle = Object.keys(secretVars).length ? this.o.secrets?.bundle : c.caBundle;
    if (bundle && row.trust) {
      // With a secret, the node's bundle and the node's CA, which signs the secret's host.
      mounts.push({ source: bundle, target: CA_PATH_IN_ENV, readOnly: true });
      Object.assign(env, trustEnv());
    }
    Object.assign(env, secretVars);
    const labels: Record<string, string> = {
      [LABEL.managed]: 'true',
      [LABEL.node]: c.nodeId,
      [LABEL.env]: row.id,
      [LABEL.name]: row.name,
      [LABEL.isolation]: isolation,
    };
    if (row.agent) labels[LABEL.agent] = row.agent;
    if (row.task) labels[LABEL.task] = row.task;
    return {
      name: `berth-${c.nodeId}-${row.name}`,
      image: row.toolchain,
      cmd: ['/.berth/bin/node', '/.berth/agent/agent.js', '--socket', AGENT_SOCKET_IN_ENV],
      env,
      labels,
      mounts,
      volumes,
      workdir: '/workspace',
      memoryBytes: row.limits.memoryMb * 1024 * 1024,
      nanoCpus: Math.round(row.limits.cpus * 1e9),
      pidsLimit: row.limits.pids,
      ulimits: c.ulimits,
      network: row.network === 'none' ? 'none' : c.networkName,
      init: true,
      idMap: ids,
      ...(isolation === 'gvisor' ? { runtime: 'runsc' } : {}),
    };
  }

  /**
   * The shared network and its firewall rules, before any environment joins it. With
   * `joined`, after an environment's container has started: the rules that match the bridge
   * must be in place by then (Podman makes its bridge only when the first one starts).
   */
  private async ensureNetwork(signal?: AbortSignal, joined = false): Promise<void> {
    const prev = this.networkReady;
    const next = (async () => {
      const done = await prev?.catch(() => undefined);
      if (done?.complete) return done;
      const net = await this.o.engine.ensureNetwork(this.o.config.networkName, { [LABEL.managed]: 'true' }, signal);
      const fw = await this.netIsolation.isolate(net);
      if (fw.detail !== done?.detail) this.o.log(`berth: network ${net.name} (${net.subnets.join(', ')}): ${fw.detail}`);
      // Fail closed: without isolation, no environment gets the shared network.
      if (!fw.applied && process.env.BERTH_ALLOW_UNISOLATED !== '1') {
        throw new BerthError(
          'engine_unavailable',
          `environments cannot be isolated on network ${net.name}: ${fw.detail}`,
          'fix the firewall (scripts/setup.sh does), or use --network none',
        );
      }
      return fw;
    })();
    this.networkReady = next;
    next.catch(() => {
      if (this.networkReady === next) this.networkReady = undefined;
    });
    const fw = await next;
    if (joined && !fw.complete && process.env.BERTH_ALLOW_UNISOLATED !== '1') {
      throw new BerthError(
        'engine_unavailable',
        `environments cannot be isolated on network ${this.o.config.networkName}: its bridge was not found once an environment started`,
        'fix the firewall (scripts/setup.sh does), or use --network none',
      );
    }
  }

  /** Starts an environment's container; on the shared network, only inside its firewall rules. */
  private async startContainer(row: EnvRow, containerId: string, signal?: AbortSignal): Promise<void> {
    if (row.network !== 'egress') {
      await this.o.engine.startContainer(containerId, signal);
      return this.attachEgress(row, containerId, signal);
    }
    await this.ensureNetwork(signal);
    await this.o.engine.startContainer(containerId, signal);
    try {
      await this.ensureNetwork(signal, true);
      await this.attachEgress(row, containerId, signal);
    } catch (err) {
      await this.o.engine.pauseContainer(containerId).catch(() => {});
      throw err;
    }
  }

  /** An environment with an egress policy: its address gets the node's rules (fail closed). */
  private async attachEgress(row: EnvRow, containerId: string, signal?: AbortSignal): Promise<void> {
    if (!this.egress.has(row.id)) return;
    const c = await this.o.engine.inspectContainer(containerId, signal);
    const addr = row.network === 'egress' ? (c?.networks?.[this.o.config.networkName] ?? null) : null;
    await this.egress.attach(row, addr);
  }

  /**
   * Removes an environment. Its work is snapshotted first unless `discard`: a removal (or an
   * expiry) never loses work by accident. A snapshot that fails stops the removal.
   */
  async remove(
    name: string,
    opts: { discard?: boolean; snapshot?: (name: string) => Promise<{ id: string }> } = {},
  ): Promise<{ snapshot: string | null }> {
    const row = this.mustGet(name);
    let snapshot: string | null = null;
    if (!opts.discard && opts.snapshot && row.state !== 'creating' && row.state !== 'pooled') {
      try {
        snapshot = (await opts.snapshot(name)).id;
      } catch (err) {
        const e = err instanceof BerthError ? err : new BerthError('internal', String(err));
        if (e.code !== 'not_found') {
          throw new BerthError(
            e.code,
            `not removing ${name}: its snapshot failed (${e.message})`,
            'fix that, or pass --discard to drop its work',
          );
        }
      }
    }
    this.creating.get(row.id)?.abort();
    this.o.db.updateEnv(row.id, { state: 'removing' });
    await this.destroy(row);
    if (row.state !== 'pooled' && !(row.state === 'creating' && row.pool_id))
      this.o.events.emit({ type: 'env.removed', env: row.name, agent: row.agent, snapshot });
    return { snapshot };
  }

  /** Removes the container, the files and the row, in that order; safe to repeat. */
  private async destroy(row: EnvRow): Promise<void> {
    const conn = this.agents.get(row.id);
    this.agents.delete(row.id);
    conn?.then((c) => c.close()).catch(() => {});
    const containers = row.container_id
      ? [row.container_id]
      : (await this.o.engine.listContainers({ [LABEL.env]: row.id, [LABEL.node]: this.o.config.nodeId })).map((c) => c.id);
    for (const cid of containers) await this.o.engine.removeContainer(cid);
    await this.egress.detach(row.id);
    const ws = join(row.dir, 'workspace');
    await this.workspaces.remove(ws);
    rmSync(row.dir, { recursive: true, force: true });
    this.o.db.deleteEnv(row.id);
    this.stats.forget(row.id);
  }

  /** The environments users made (pool members waiting to be claimed are not listed). */
  list(): EnvInfo[] {
    return this.o.db
      .listEnvs()
      .filter((r) => r.state !== 'pooled' && !(r.state === 'creating' && r.pool_id))
      .map((r) => this.info(r));
  }

  get(name: string): EnvInfo {
    return this.info(this.mustGet(name));
  }

  private mustGet(name: string): EnvRow {
    validateEnvName(name);
    const row = this.o.db.envByName(name);
    if (!row) throw new BerthError('not_found', `no environment named ${name}`, 'see `berth ls` for the environments on this node');
    return row;
  }

  info(row: EnvRow): EnvInfo {
    const identity: Identity = {
      repo: row.repo,
      ref: row.commit_sha,
      toolchain: row.toolchain,
      ...(row.snapshot ? { snapshot: row.snapshot } : {}),
      ...(Object.keys(row.cache_keys).length ? { cacheKeys: row.cache_keys } : {}),
    };
    const expires = row.ttl_s ? new Date(Date.parse(row.created_at) + row.ttl_s * 1000).toISOString() : null;
    return {
      id: row.id,
      name: row.name,
      state: row.state,
      repo: row.repo,
      ref: row.ref,
      commit: row.commit_sha,
      toolchain: row.toolchain,
      containerId: row.container_id,
      engine: row.engine,
      network: row.network,
      trust: row.trust ? { caBundle: CA_PATH_IN_ENV, variables: Object.keys(trustEnv()) } : null,
      limits: row.limits,
      labels: { ...(row.agent ? { agent: row.agent } : {}), ...(row.task ? { task: row.task } : {}) },
      createdAt: row.created_at,
      identity: { ...identity, hash: identityHash(identity), short: encodeIdentity(identity) },
      origin: { snapshot: row.snapshot, pool: row.from_pool === 1 },
      storage: isSubvolumeSync(join(row.dir, 'workspace')) ? 'btrfs' : 'copy',
      cacheKeys: row.cache_keys,
      ttl: { seconds: row.ttl_s, idleSeconds: row.idle_ttl_s, expiresAt: expires },
      upstream: row.upstream ? (JSON.parse(row.upstream) as EnvInfo['upstream']) : null,
      placement: this.placementOf(row),
      egress: this.egress.summary(row),
      secrets: this.o.secrets?.vault.shown(row.id) ?? [],
      ...supervisionOf(row),
    };
  }

  /** Placeholders for the secrets a create request names; nothing is made when one is unknown. */
  private prepareSecrets(req: CreateEnvRequest): ReturnType<NodeSecrets['vault']['prepare']> | undefined {
    if (!req.secrets?.length) return undefined;
    if (!this.o.secrets) throw new BerthError('internal', 'this node has no secrets store');
    const prepared = this.o.secrets.vault.prepare(req.secrets);
    if (req.inheritTrust === false || !this.o.secrets.bundle) {
      throw new BerthError(
        'usage',
        "a secret needs the environment to trust the node (its host is reached through the node's CA)",
        'drop --no-trust, or give no --secret',
      );
    }
    if (req.network === 'none')
      throw new BerthError('usage', 'an environment with --network none reaches no secret host', 'drop one of --network none and --secret');
    return prepared;
  }

  /** Commands running now, per environment: an environment is never idle while one runs. */
  readonly inflight = new Map<string, number>();

  busy(id: string, delta: 1 | -1): void {
    const n = (this.inflight.get(id) ?? 0) + delta;
    if (n <= 0) this.inflight.delete(id);
    else this.inflight.set(id, n);
    this.lastUsed.set(id, Date.now());
  }

  /** Marks an environment as in use (a human typing in a terminal counts). */
  touch(name: string): void {
    const row = this.o.db.envByName(name);
    if (row) this.lastUsed.set(row.id, Date.now());
  }

  row(name: string): EnvRow {
    return this.mustGet(name);
  }

  get db(): StateDb {
    return this.o.db;
  }

  get store(): BlobStore {
    return this.o.store;
  }

  get engine(): Engine {
    return this.o.engine;
  }

  log(line: string): void {
    this.o.log(line);
  }

  // ---- pause and resume ----------------------------------------------------------------

  /** Freezes every process (the engine's freezer): memory is kept, nothing runs. */
  /** Pauses for the node's own reasons (a budget), with the reason in the state event. */
  private async pauseById(id: string, reason: string): Promise<void> {
    const row = this.o.db.envById(id);
    if (!row || row.state !== 'running' || !row.container_id) return;
    await this.o.engine.pauseContainer(row.container_id);
    this.setState(row, 'paused', reason);
  }

  async pause(name: string): Promise<EnvInfo> {
    const row = this.mustGet(name);
    if (row.state === 'paused') return this.info(row);
    if (row.state !== 'running' || !row.container_id)
      throw new BerthError('not_running', `environment ${name} is ${row.state}`, 'only a running environment can be paused');
    await this.o.engine.pauseContainer(row.container_id);
    this.setState(row, 'paused', null);
    return this.info({ ...row, state: 'paused' });
  }

  async resume(name: string): Promise<EnvInfo> {
    const row = this.mustGet(name);
    if (row.state === 'running') return this.info(row);
    if (row.state !== 'paused' || !row.container_id)
      throw new BerthError('not_running', `environment ${name} is ${row.state}`, 'only a paused environment can be resumed');
    this.egress.checkResume(row.id, name);
    await this.o.engine.unpauseContainer(row.container_id);
    this.setState(row, 'running', null);
    this.lastUsed.set(row.id, Date.now());
    return this.info({ ...row, state: 'running' });
  }

  /** Records a state change and tells subscribers. */
  private setState(row: EnvRow, state: EnvState, reason: string | null): void {
    this.o.db.updateEnv(row.id, { state });
    if (row.state !== state && row.state !== 'pooled')
      this.o.events.emit({ type: 'env.state', env: row.name, agent: row.agent, state, previous: row.state, reason });
  }

  get events(): EventBus {
    return this.o.events;
  }

  /** A snapshot's copy-on-write tree, when the node keeps them. */
  treePath(snapshotId: string): string {
    return join(this.o.config.workRoot, 'trees', snapshotId.replace(/^sha256:/, ''));
  }

  /** Where an environment runs, and why. */
  placement(name: string): EnvInfo['placement'] {
    return this.placementOf(this.mustGet(name));
  }

  private placementOf(row: EnvRow): EnvInfo['placement'] {
    const p = row.placement ? (JSON.parse(row.placement) as { operator: string; reason: string }) : null;
    return {
      node: this.o.config.nodeId,
      operator: p?.operator ?? null,
      reason: p?.reason ?? (row.upstream ? 'entered from another node' : 'created on this node'),
    };
  }

  // ---- the agent -----------------------------------------------------------------------

  /** The persistent connection to an environment's agent, opened on first use. */
  async agentFor(name: string, opts: { resume?: boolean } = {}): Promise<{ row: EnvRow; conn: AgentConnection }> {
    let row = this.mustGet(name);
    if (row.state === 'paused') {
      if (!opts.resume)
        throw new BerthError('not_running', `environment ${name} is paused`, `resume it with \`berth resume ${name}\`, or pass --resume`);
      await this.resume(name);
      row = this.mustGet(name);
    }
    this.lastUsed.set(row.id, Date.now());
    if (row.state !== 'running') {
      throw new BerthError(
        'not_running',
        `environment ${name} is ${row.state}`,
        row.state === 'vanished' ? `its container is gone; remove it with \`berth rm ${name}\`` : 'wait for it, or remove it',
      );
    }
    const cached = this.agents.get(row.id);
    if (cached) {
      const conn = await cached.catch(() => undefined);
      if (conn?.isOpen) return { row, conn };
      this.agents.delete(row.id);
    }
    const pending = this.reconnect(row);
    this.agents.set(row.id, pending);
    try {
      return { row, conn: await pending };
    } catch (err) {
      this.agents.delete(row.id);
      throw err;
    }
  }

  private async reconnect(row: EnvRow): Promise<AgentConnection> {
    try {
      const channel = this.agentChannel(row);
      if (!(await channel.ready())) throw new Error('no agent socket');
      return AgentConnection.fromStream(await channel.open(AbortSignal.timeout(2000)));
    } catch {
      const c = row.container_id ? await this.o.engine.inspectContainer(row.container_id) : null;
      if (!c) {
        this.setState(row, 'vanished', 'its container is gone');
        throw new BerthError('not_running', `environment ${row.name}'s container has vanished`, `remove it with \`berth rm ${row.name}\``);
      }
      if (c.status === 'paused')
        throw new BerthError('not_running', `environment ${row.name} is paused`, `resume it with \`berth resume ${row.name}\``);
      if (c.status !== 'running') {
        await this.startContainer(row, c.id);
        const conn = await this.connectAgent(row, c.id);
        await conn.request({ op: 'service.restore' });
        return conn;
      }
      throw new BerthError('internal', `environment ${row.name}'s agent is not answering`);
    }
  }

  private async connectAgent(row: EnvRow, containerId: string, signal?: AbortSignal): Promise<AgentConnection> {
    const channel = this.agentChannel(row);
    const deadline = Date.now() + 20_000;
    let lastCheck = Date.now();
    for (let delay = 2; ; delay = Math.min(delay * 1.5, 25)) {
      signal?.throwIfAborted();
      if (await channel.ready()) {
        try {
          const conn = AgentConnection.fromStream(await channel.open(signal));
          const timer = setTimeout(() => conn.close(), 5000); // an agent that never answers
          const pong = await conn.request({ op: 'ping' }).finally(() => clearTimeout(timer));
          if (pong.ok) {
            this.agents.set(row.id, Promise.resolve(conn));
            return conn;
          }
          conn.close();
        } catch (err) {
          if (err instanceof AgentGoneError) throw err;
        }
      }
      if (Date.now() - lastCheck > 500) {
        lastCheck = Date.now();
        const c = await this.o.engine.inspectContainer(containerId, signal);
        if (!c || c.status === 'exited' || c.status === 'dead') {
          throw new BerthError(
            'internal',
            `environment ${row.name}'s container stopped while starting (${c?.status ?? 'gone'})`,
            'see the engine logs for the container',
          );
        }
      }
      if (Date.now() > deadline) throw new BerthError('timeout', `environment ${row.name}'s agent did not start within 20 s`);
      await sleep(delay);
    }
  }

  /** The agent starts the services it saved: only ever after the environment's rules are in place. */
  private async restoreServices(row: EnvRow, containerId: string): Promise<void> {
    const conn = await this.connectAgent(row, containerId);
    const r = await conn.request({ op: 'service.restore' });
    if (!r.ok) throw new BerthError('internal', `could not restore ${row.name}'s services: ${r.error?.message ?? 'no answer'}`);
  }

  /** As restoreServices, off the start-up path (the network rules of the node come after). */
  private restoreLater(row: EnvRow, containerId: string): void {
    setImmediate(
      () =>
        void this.restoreServices(row, containerId).catch((err: unknown) => this.o.log(`berth: ${row.name}: ${(err as Error).message}`)),
    );
  }

  // ---- reconciliation ------------------------------------------------------------------

  /**
   * Run at start: every container carries labels, so the node's rows and the engine's
   * containers can be matched both ways. A half-made environment (a daemon killed during
   * `new`) is removed whole; a container with no row is removed; a row whose container is
   * gone is marked vanished (its workspace stays, so nothing is lost).
   */
  async reconcile(): Promise<{ removedHalfMade: number; removedOrphans: number; vanished: number }> {
    let removedHalfMade = 0;
    let removedOrphans = 0;
    let vanished = 0;
    const containers = await this.o.engine.listContainers({ [LABEL.managed]: 'true', [LABEL.node]: this.o.config.nodeId });
    const byEnv = new Map(containers.map((c) => [c.labels[LABEL.env] ?? '', c]));
    const restores: Array<[EnvRow, string]> = [];
    for (const row of this.o.db.listEnvs()) {
      const c = byEnv.get(row.id);
      byEnv.delete(row.id);
      if (row.state === 'creating' || row.state === 'removing') {
        try {
          await this.destroy({ ...row, container_id: c?.id ?? row.container_id });
          removedHalfMade++;
        } catch (err) {
          this.o.log(`berth: could not clean up half-made environment ${row.name}: ${(err as Error).message}`);
        }
      } else if (!c && row.pool_id) {
        await this.destroy(row).catch(() => {});
      } else if (!c) {
        if (row.state !== 'vanished') {
          this.setState(row, 'vanished', 'its container was gone when the node started');
          vanished++;
        }
      } else if (c.status === 'exited' || c.status === 'created') {
        // After a reboot the firewall rules are gone: they go back before the container runs,
        // and its saved services only after that.
        await this.startContainer(row, c.id)
          .then(() => this.restoreServices(row, c.id))
          .catch((err: unknown) => this.o.log(`berth: ${row.name}: ${(err as Error).message}`));
      } else if (c.status === 'running') {
        // Still running (a daemon restart, or the engine started it while the daemon was down):
        // its rules are re-made for this daemon's listeners, then its saved services may start.
        const attached = this.egress.has(row.id)
          ? await this.attachEgress(row, c.id).then(
              () => true,
              async (err: unknown) => {
                this.o.log(`berth: ${row.name}: ${(err as Error).message}`);
                await this.pauseById(row.id, 'its egress rules could not be applied').catch(() => {});
                return false;
              },
            )
          : true;
        if (attached) restores.push([row, c.id]);
      }
    }
    for (const c of byEnv.values()) {
      try {
        await this.o.engine.removeContainer(c.id, AbortSignal.timeout(30_000));
        removedOrphans++;
      } catch (err) {
        this.o.log(`berth: could not remove orphaned container ${c.id.slice(0, 12)}: ${(err as Error).message}`);
      }
    }
    // Running environments on the network (a daemon restart, not a reboot) get the rules too.
    if (this.o.db.listEnvs().some((r) => r.network === 'egress'))
      await this.ensureNetwork(undefined, true).catch((err: unknown) => this.o.log(`berth: ${(err as Error).message}`));
    // Egress rules an earlier daemon left for addresses no environment holds now go.
    await this.egress.reconciled().catch((err: unknown) => this.o.log(`berth: egress rules: ${(err as Error).message}`));
    for (const [row, id] of restores) this.restoreLater(row, id);
    // Directories with no row are left by a crash between mkdir and insert; they hold nothing.
    return { removedHalfMade, removedOrphans, vanished };
  }

  close(): void {
    this.egress.close();
    for (const a of this.agents.values()) a.then((c) => c.close()).catch(() => {});
    this.agents.clear();
  }
}
