// Environments as Pods: create and wait (by watch, not by polling), remove, and claim a warm
// pool Pod atomically. A claim is a replace (PUT) of the Pod as it was read, with its
// resourceVersion: the API server refuses it with 409 Conflict when anyone changed the Pod
// since, so two claimers, even on two berth nodes sharing the cluster, never get one Pod.
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node';
import { BerthError } from '../../core/errors.js';
import type { Cluster } from './cluster.js';
import { apiFailure, kubeError } from './errors.js';
import { KLABEL, labelValue } from './pod-spec.js';
import { networkPolicy, type PolicyParams } from './network-policy.js';

/** Why a Pod cannot run, when its containers say so; null while it may still start. */
export function stuckReason(pod: V1Pod): string | null {
  if (pod.status?.reason === 'Evicted') return `evicted: ${pod.status.message ?? 'by the kubelet'}`;
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  for (const s of statuses) {
    const w = s.state?.waiting;
    if (!w?.reason) continue;
    if (
      w.reason === 'ErrImageNeverPull' ||
      w.reason === 'ErrImagePull' ||
      w.reason === 'ImagePullBackOff' ||
      w.reason === 'InvalidImageName'
    )
      return `image ${s.image} is not on the cluster's node (${w.reason})`;
    if (w.reason === 'CreateContainerConfigError' || w.reason === 'CreateContainerError' || w.reason === 'RunContainerError')
      return `container ${s.name} cannot start: ${w.message ?? w.reason}`;
    if (w.reason === 'CrashLoopBackOff') return `container ${s.name} keeps exiting (${s.lastState?.terminated?.reason ?? 'crash'})`;
  }
  for (const s of statuses) {
    const t = s.state?.terminated;
    if (t && t.exitCode !== 0 && s.name === 'berth-agent') return `the agent's init container failed: ${t.reason ?? `exit ${t.exitCode}`}`;
  }
  if (pod.status?.phase === 'Failed') return `the Pod failed: ${pod.status.reason ?? pod.status.message ?? 'unknown'}`;
  const unschedulable = pod.status?.conditions?.find(
    (c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable',
  );
  if (unschedulable) return `no cluster node can run it: ${unschedulable.message ?? 'unschedulable'}`;
  return null;
}

function isRunning(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && (pod.status.containerStatuses ?? []).every((s) => s.state?.running);
}

export class KubePods {
  constructor(readonly cluster: Cluster) {}

  private get ns(): string {
    return this.cluster.namespace;
  }

  async create(pod: V1Pod): Promise<V1Pod> {
    try {
      return await this.cluster.core.createNamespacedPod({ namespace: this.ns, body: pod });
    } catch (err) {
      throw kubeError(err, `creating Pod ${pod.metadata?.name ?? ''}`, { namespace: this.ns });
    }
  }

  /** Waits, by watching the one Pod, until it runs; fails at once with the reason it cannot. */
  async waitRunning(name: string, signal?: AbortSignal, timeoutMs = 60_000): Promise<V1Pod> {
    const sig = signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    const first = await this.read(name);
    if (!first) throw new BerthError('not_found', `Pod ${name} is gone`);
    if (isRunning(first)) return first;
    const stuck = stuckReason(first);
    if (stuck) throw new BerthError(stuck.startsWith('image') ? 'image_missing' : 'internal', `Pod ${name}: ${stuck}`);
    return new Promise<V1Pod>((resolve, reject) => {
      let ctl: AbortController | undefined;
      let settled = false;
      const finish = (err: Error | null, pod?: V1Pod): void => {
        if (settled) return;
        settled = true;
        sig.removeEventListener('abort', onAbort);
        ctl?.abort();
        if (err) reject(err);
        else resolve(pod!);
      };
      const onAbort = (): void =>
        finish(
          signal?.aborted
            ? new BerthError('interrupted', `waiting for Pod ${name} was cancelled`)
            : new BerthError('timeout', `Pod ${name} did not start within ${timeoutMs / 1000} s`),
        );
      sig.addEventListener('abort', onAbort, { once: true });
      new Watch(this.cluster.kc)
        .watch(
          `/api/v1/namespaces/${this.ns}/pods`,
          { fieldSelector: `metadata.name=${name}`, resourceVersion: first.metadata?.resourceVersion },
          (phase, pod: V1Pod) => {
            if (phase === 'DELETED') return finish(new BerthError('not_running', `Pod ${name} was deleted while it started`));
            if (isRunning(pod)) return finish(null, pod);
            const why = stuckReason(pod);
            if (why)
              finish(
                new BerthError(
                  why.startsWith('image') ? 'image_missing' : 'internal',
                  `Pod ${name}: ${why}`,
                  why.startsWith('image')
                    ? 'import it into the node (scripts/kubernetes up does for the toolchain), or push it to a registry the cluster pulls from'
                    : undefined,
                ),
              );
          },
          (err: unknown) => {
            if (!settled)
              finish(
                err
                  ? kubeError(err, `watching Pod ${name}`, { namespace: this.ns })
                  : new BerthError('engine_unavailable', `the watch on Pod ${name} ended`),
              );
          },
        )
        .then((c) => {
          ctl = c;
          if (settled) c.abort();
        })
        .catch((err: unknown) => finish(kubeError(err, `watching Pod ${name}`, { namespace: this.ns })));
    });
  }

  async read(name: string): Promise<V1Pod | null> {
    try {
      return await this.cluster.core.readNamespacedPod({ name, namespace: this.ns });
    } catch (err) {
      if (apiFailure(err)?.code === 404) return null;
      throw kubeError(err, `reading Pod ${name}`, { namespace: this.ns });
    }
  }

  async list(selector: Record<string, string>): Promise<V1Pod[]> {
    const labelSelector = Object.entries(selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    try {
      return (await this.cluster.core.listNamespacedPod({ namespace: this.ns, labelSelector })).items;
    } catch (err) {
      throw kubeError(err, 'listing Pods', { namespace: this.ns });
    }
  }

  /** Deletes a Pod at once (its agent and commands get no grace); a gone Pod is fine. */
  async remove(name: string): Promise<void> {
    try {
      await this.cluster.core.deleteNamespacedPod({ name, namespace: this.ns, gracePeriodSeconds: 0 });
    } catch (err) {
      if (apiFailure(err)?.code !== 404) throw kubeError(err, `deleting Pod ${name}`, { namespace: this.ns });
    }
    await this.removePolicy(name);
  }

  /**
   * Takes one warm Pod of a pool for an environment, or null when none is warm. Each attempt
   * replaces the Pod as read, resourceVersion included; a 409 means another claimer won it.
   */
  async claim(poolId: string, who: { claimant: string; envName: string }, cached?: () => V1Pod[]): Promise<V1Pod | null> {
    for (let round = 0; round < 5; round++) {
      // The first round may take its candidates from a watch's cache (no list on the claim's
      // path); a stale one only costs a 409, and the next round lists.
      const fromCache =
        round === 0
          ? (cached?.().filter(
              (p) => p.metadata?.labels?.[KLABEL.pool] === labelValue(poolId) && p.metadata.labels[KLABEL.poolState] === 'warm',
            ) ?? [])
          : [];
      const warm = fromCache.length ? fromCache : await this.list({ [KLABEL.pool]: labelValue(poolId), [KLABEL.poolState]: 'warm' });
      if (!warm.length) return null;
      // Claimers start at different Pods, so two of them rarely race for the same one.
      const start = Math.floor(Math.random() * warm.length);
      let conflicts = 0;
      for (let i = 0; i < warm.length; i++) {
        const pod = warm[(start + i) % warm.length]!;
        if (!isRunning(pod) || pod.metadata?.deletionTimestamp) continue;
        const labels = {
          ...pod.metadata!.labels,
          [KLABEL.poolState]: 'claimed',
          [KLABEL.claimant]: labelValue(who.claimant),
          [KLABEL.name]: labelValue(who.envName),
        };
        try {
          return await this.cluster.core.replaceNamespacedPod({
            name: pod.metadata!.name!,
            namespace: this.ns,
            body: { ...pod, metadata: { ...pod.metadata, labels } },
          });
        } catch (err) {
          const code = apiFailure(err)?.code;
          if (code === 409 || code === 404) {
            conflicts++;
            continue;
          }
          throw kubeError(err, `claiming Pod ${pod.metadata!.name!}`, { namespace: this.ns });
        }
      }
      if (!conflicts && !fromCache.length) return null;
    }
    return null;
  }

  /** The node's CA bundle as a ConfigMap the Pods mount; made or brought up to date. */
  async ensureConfigMap(name: string, data: Record<string, string>): Promise<void> {
    const body: V1ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { [KLABEL.managed]: 'true' } }, data };
    try {
      await this.cluster.core.createNamespacedConfigMap({ namespace: this.ns, body });
    } catch (err) {
      if (apiFailure(err)?.code !== 409) throw kubeError(err, `creating ConfigMap ${name}`, { namespace: this.ns });
      await this.cluster.core
        .replaceNamespacedConfigMap({ name, namespace: this.ns, body })
        .catch((e: unknown) => Promise.reject(kubeError(e, `updating ConfigMap ${name}`, { namespace: this.ns })));
    }
  }

  /** The environment's NetworkPolicy, named after its Pod. */
  async applyPolicy(p: PolicyParams): Promise<void> {
    const body = networkPolicy(p);
    try {
      await this.cluster.net.createNamespacedNetworkPolicy({ namespace: this.ns, body });
    } catch (err) {
      if (apiFailure(err)?.code !== 409) throw kubeError(err, `creating NetworkPolicy ${p.name}`, { namespace: this.ns });
      await this.cluster.net.deleteNamespacedNetworkPolicy({ name: p.name, namespace: this.ns });
      await this.cluster.net.createNamespacedNetworkPolicy({ namespace: this.ns, body });
    }
  }

  async removePolicy(name: string): Promise<void> {
    try {
      await this.cluster.net.deleteNamespacedNetworkPolicy({ name, namespace: this.ns });
    } catch (err) {
      if (apiFailure(err)?.code !== 404) throw kubeError(err, `deleting NetworkPolicy ${name}`, { namespace: this.ns });
    }
  }
}
