// Environments on a Kubernetes cluster: each one a Pod (src/engine/kubernetes/pod-spec.ts),
// its agent reached through the API server (an exec stream: no host path, no Pod address),
// its isolation a NetworkPolicy, its pool members labelled Pods claimed with resourceVersion.
// The agent protocol is the same as on a local node, so every agent op (exec, batch,
// services, describe, files) works unchanged once the connection is open.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AgentConnection } from '../agent/client.js';
import type { AgentResponse } from '../agent/protocol.js';
import { BerthError } from '../core/errors.js';
import { validateEnvName } from '../core/names.js';
import { ExecAgentChannel } from '../engine/kubernetes/agent-channel.js';
import { connectCluster, type Cluster } from '../engine/kubernetes/cluster.js';
import { KLABEL, labelValue, podNameFor, podSpec } from '../engine/kubernetes/pod-spec.js';
import { KubePods } from '../engine/kubernetes/pods.js';
import { PodWatch, type PodTrouble } from '../engine/kubernetes/pod-watch.js';
import { CA_PATH_IN_ENV, trustEnv } from './node-config.js';

export interface KubeEnvOptions {
  kubeconfig: string;
  namespace: string;
  nodeId: string;
  /** berth's agent image: the node binary and agent.js under /opt/berth (docs/kubernetes.md). */
  agentImage: string;
  /** The node's CA bundle, which every environment trusts; none when null. */
  caBundle: string | null;
  /** The cluster's Pod and Service ranges, which environments do not reach. */
  clusterCidrs?: string[];
  onTrouble?: (t: PodTrouble) => void;
}

export interface KubeEnv {
  name: string;
  pod: string;
  id: string;
  poolId: string | null;
  state: 'running' | 'vanished';
  reason: string | null;
}

export interface NewKubeEnv {
  name: string;
  image: string;
  network?: 'none' | 'egress';
  memoryMb?: number;
  cpus?: number;
  env?: Record<string, string>;
}

const CA_CONFIGMAP = 'berth-ca';

export class KubernetesEnvironments {
  private readonly envs = new Map<string, KubeEnv>();
  private readonly conns = new Map<string, Promise<AgentConnection>>();
  readonly troubles: PodTrouble[] = [];

  private constructor(
    readonly cluster: Cluster,
    readonly pods: KubePods,
    readonly watch: PodWatch,
    private readonly o: KubeEnvOptions,
  ) {}

  /** Connects (checking kubeconfig, namespace and verbs), and starts watching this node's Pods. */
  static async open(o: KubeEnvOptions, signal?: AbortSignal): Promise<KubernetesEnvironments> {
    const cluster = await connectCluster(o.kubeconfig, o.namespace, signal);
    const pods = new KubePods(cluster);
    const holder: { self?: KubernetesEnvironments } = {};
    const watch = new PodWatch(cluster, o.nodeId, (t) => holder.self?.trouble(t));
    const self = new KubernetesEnvironments(cluster, pods, watch, o);
    holder.self = self;
    if (o.caBundle) await pods.ensureConfigMap(CA_CONFIGMAP, { 'ca-certificates.crt': readFileSync(o.caBundle, 'utf8') });
    await watch.start();
    return self;
  }

  private trouble(t: PodTrouble): void {
    this.troubles.push(t);
    const env = [...this.envs.values()].find((e) => e.pod === t.pod);
    if (env && t.kind !== 'stuck') {
      env.state = 'vanished';
      env.reason = t.reason;
      void this.conns
        .get(env.name)
        ?.then((c) => c.close())
        .catch(() => {});
      this.conns.delete(env.name);
    }
    this.o.onTrouble?.(t);
  }

  private podFor(id: string, p: NewKubeEnv, pool?: string): ReturnType<typeof podSpec> {
    return podSpec({
      podName: podNameFor(this.o.nodeId, id),
      nodeId: this.o.nodeId,
      envId: id,
      envName: p.name,
      image: p.image,
      agentImage: this.o.agentImage,
      env: { BERTH_ENV: p.name, BERTH_ENV_ID: id, ...(this.o.caBundle ? trustEnv() : {}), ...(p.env ?? {}) },
      memoryMb: p.memoryMb ?? 2048,
      cpus: p.cpus ?? 2,
      ...(this.o.caBundle ? { caBundle: { configMap: CA_CONFIGMAP, key: 'ca-certificates.crt', path: CA_PATH_IN_ENV } } : {}),
      ...(this.cluster.gvisor ? { runtimeClassName: this.cluster.gvisor } : {}),
      ...(pool ? { pool: { id: pool } } : {}),
    });
  }

  /** A new environment: its Pod and NetworkPolicy, then its agent, answering. */
  async create(p: NewKubeEnv, signal?: AbortSignal, pool?: string): Promise<KubeEnv> {
    const name = validateEnvName(p.name);
    if (this.envs.has(name))
      throw new BerthError('already_exists', `environment ${name} already exists`, `remove it with \`berth rm ${name}\``);
    const id = randomBytes(6).toString('hex');
    const spec = this.podFor(id, { ...p, name }, pool);
    const pod = spec.metadata!.name!;
    const env: KubeEnv = { name, pod, id, poolId: pool ?? null, state: 'running', reason: null };
    // The policy goes first: the Pod never runs without its isolation.
    await this.pods.applyPolicy({ name: pod, envId: id, mode: p.network ?? 'egress', clusterCidrs: this.o.clusterCidrs ?? [] });
    try {
      await this.pods.create(spec);
      this.envs.set(name, env);
      await this.pods.waitRunning(pod, signal);
      await this.agent(name, signal);
      return env;
    } catch (err) {
      this.envs.delete(name);
      this.watch.expected.add(pod);
      await this.pods.remove(pod).catch(() => {});
      throw err;
    }
  }

  /** Fills a pool with warm Pods (they carry the pool's label and state=warm). */
  async fill(poolId: string, size: number, p: Omit<NewKubeEnv, 'name'>, signal?: AbortSignal): Promise<void> {
    const made: Promise<unknown>[] = [];
    for (let i = 0; i < size; i++)
      made.push(this.create({ ...p, name: `pool-${labelValue(poolId)}-${randomBytes(3).toString('hex')}` }, signal, poolId));
    await Promise.all(made);
  }

  /**
   * A warm Pod of the pool, claimed atomically, as the environment `name`; null when none is
   * warm. Works across berth nodes sharing the namespace: the claim is the API server's.
   */
  async claim(poolId: string, name: string): Promise<KubeEnv | null> {
    validateEnvName(name);
    const pod = await this.pods.claim(poolId, { claimant: this.o.nodeId, envName: name }, () => [...this.watch.pods.values()]);
    if (!pod) return null;
    const podName = pod.metadata!.name!;
    const id = pod.metadata!.labels![KLABEL.env]!;
    const prior = [...this.envs.values()].find((e) => e.pod === podName);
    if (prior) this.envs.delete(prior.name);
    const env: KubeEnv = { name, pod: podName, id, poolId, state: 'running', reason: null };
    this.envs.set(name, env);
    const conn = prior ? this.conns.get(prior.name) : undefined;
    this.conns.delete(prior?.name ?? '');
    if (conn) this.conns.set(name, conn);
    return env;
  }

  get(name: string): KubeEnv {
    const e = this.envs.get(name);
    if (!e) throw new BerthError('not_found', `no environment named ${name}`, 'see `berth ls`');
    return e;
  }

  list(): KubeEnv[] {
    return [...this.envs.values()];
  }

  /** The persistent agent connection, opened once and checked with a ping. */
  agent(name: string, signal?: AbortSignal): Promise<AgentConnection> {
    const env = this.get(name);
    if (env.state === 'vanished')
      return Promise.reject(
        new BerthError('not_running', `environment ${name} is gone: ${env.reason ?? ''}`, `remove it with \`berth rm ${name}\``),
      );
    const cached = this.conns.get(name);
    if (cached) {
      return cached.then((c) => (c.isOpen ? c : (this.conns.delete(name), this.agent(name, signal))));
    }
    const pending = this.connect(env, signal);
    this.conns.set(name, pending);
    pending.catch(() => this.conns.delete(name));
    return pending;
  }

  private async connect(env: KubeEnv, signal?: AbortSignal): Promise<AgentConnection> {
    const channel = new ExecAgentChannel(this.cluster.kc, this.cluster.namespace, env.pod);
    const deadline = Date.now() + 20_000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      signal?.throwIfAborted();
      try {
        const conn = AgentConnection.fromStream(await channel.open(signal));
        const timer = setTimeout(() => conn.close(), 5000);
        const pong = await conn.request({ op: 'ping' }).finally(() => clearTimeout(timer));
        if (pong.ok) return conn;
        conn.close();
      } catch (err) {
        if (Date.now() > deadline)
          throw new BerthError(
            'timeout',
            `environment ${env.name}'s agent did not answer through ${channel.describe}: ${(err as Error).message}`,
          );
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Runs one command through the agent; its output collected (a caller that streams uses agent()). */
  async exec(name: string, argv: string[], opts: { stdin?: Buffer } = {}): Promise<AgentResponse & { stdout: string; stderr: string }> {
    const conn = await this.agent(name);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const s = conn.open({ op: 'exec', argv, stdin: !!opts.stdin }, { onStdout: (c) => out.push(c), onStderr: (c) => err.push(c) });
    if (opts.stdin) {
      s.writeStdin(opts.stdin);
      s.endStdin();
    }
    const r = await s.done;
    if (!r.ok) throw new BerthError('internal', `${name}: ${r.error?.message ?? 'the agent refused the command'}`);
    return { ...r, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  }

  /** Removes the Pod and its policy; safe to repeat. */
  async remove(name: string): Promise<void> {
    const env = this.get(name);
    void this.conns
      .get(name)
      ?.then((c) => c.close())
      .catch(() => {});
    this.conns.delete(name);
    this.watch.expected.add(env.pod);
    await this.pods.remove(env.pod);
    this.envs.delete(name);
  }

  /** Removes every Pod of this node (pool members too), and stops watching. */
  async close(opts: { removeAll?: boolean } = {}): Promise<void> {
    this.watch.stop();
    for (const c of this.conns.values()) void c.then((x) => x.close()).catch(() => {});
    this.conns.clear();
    if (opts.removeAll) {
      const all = await this.pods.list({ [KLABEL.managed]: 'true', [KLABEL.node]: labelValue(this.o.nodeId) });
      await Promise.all(all.map((p) => this.pods.remove(p.metadata!.name!)));
      this.envs.clear();
    }
  }
}
