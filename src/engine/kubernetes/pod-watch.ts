// State from a watch, not from polling: one list, then a watch from its resourceVersion, over
// every Pod of this berth node. A watch that ends (the API server restarted, a timeout) is
// resumed from the last version seen; one that is too old (410 Gone) lists again, and so does a
// periodic resync, which also notices a Pod that went while no watch was open. A Pod that goes
// without berth asking, or is evicted, or is stuck pulling its image, is reported with the
// reason, once.
import type { V1Pod } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node';
import type { Cluster } from './cluster.js';
import { apiFailure } from './errors.js';
import { KLABEL, labelValue } from './pod-spec.js';
import { stuckReason } from './pods.js';

export interface PodTrouble {
  pod: string;
  env: string;
  kind: 'deleted' | 'evicted' | 'stuck';
  reason: string;
}

export class PodWatch {
  readonly pods = new Map<string, V1Pod>();
  /** Pods berth itself is deleting: their going is no news. */
  readonly expected = new Set<string>();
  private readonly reported = new Map<string, string>();
  private ctl: AbortController | undefined;
  private rv: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Lists made so far (1 at start, then one per resync or 410). */
  lists = 0;

  constructor(
    private readonly cluster: Cluster,
    private readonly nodeId: string,
    private readonly onTrouble: (t: PodTrouble) => void,
    private readonly resyncMs = 60_000,
  ) {}

  private get selector(): string {
    return `${KLABEL.managed}=true,${KLABEL.node}=${labelValue(this.nodeId)}`;
  }

  async start(): Promise<void> {
    await this.relist();
    this.timer = setInterval(() => void this.relist().catch(() => {}), this.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.ctl?.abort();
  }

  /** Lists every Pod, reports the ones that went unseen, and watches from there. */
  async relist(): Promise<void> {
    const list = await this.cluster.core.listNamespacedPod({ namespace: this.cluster.namespace, labelSelector: this.selector });
    this.lists++;
    const seen = new Set<string>();
    for (const pod of list.items) {
      const name = pod.metadata!.name!;
      seen.add(name);
      this.update(pod);
    }
    for (const [name, pod] of this.pods) if (!seen.has(name)) this.gone(pod);
    this.rv = list.metadata?.resourceVersion;
    this.rewatch();
  }

  private rewatch(): void {
    if (this.stopped) return;
    this.ctl?.abort();
    const ctlHolder: { c?: AbortController } = {};
    void new Watch(this.cluster.kc)
      .watch(
        `/api/v1/namespaces/${this.cluster.namespace}/pods`,
        { labelSelector: this.selector, resourceVersion: this.rv, allowWatchBookmarks: true },
        (phase, obj: V1Pod & { metadata?: { resourceVersion?: string } }) => {
          if (obj.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
          if (phase === 'ADDED' || phase === 'MODIFIED') this.update(obj);
          else if (phase === 'DELETED') this.gone(obj);
          else if (phase === 'ERROR') this.rv = undefined; // 410 Gone arrives as an ERROR event
        },
        (err: unknown) => {
          if (this.stopped || ctlHolder.c !== this.ctl) return;
          // Too old, or unknown: list again. Otherwise resume where it ended, after a breath.
          const gone = apiFailure(err)?.code === 410 || this.rv === undefined;
          setTimeout(
            () => void (gone ? this.relist() : Promise.resolve(this.rewatch())).catch(() => setTimeout(() => this.rewatch(), 1000).unref()),
            err ? 500 : 0,
          ).unref();
        },
      )
      .then((c) => {
        ctlHolder.c = c;
        this.ctl = c;
        if (this.stopped) c.abort();
      })
      .catch(() => setTimeout(() => void this.relist().catch(() => this.rewatch()), 1000).unref());
  }

  private update(pod: V1Pod): void {
    const name = pod.metadata!.name!;
    this.pods.set(name, pod);
    const why = stuckReason(pod);
    if (why && this.reported.get(name) !== why) {
      this.reported.set(name, why);
      this.onTrouble({
        pod: name,
        env: pod.metadata?.labels?.[KLABEL.name] ?? name,
        kind: why.startsWith('evicted') ? 'evicted' : 'stuck',
        reason: why,
      });
    }
  }

  private gone(pod: V1Pod): void {
    const name = pod.metadata!.name!;
    this.pods.delete(name);
    this.reported.delete(name);
    if (this.expected.delete(name)) return;
    const evicted = pod.status?.reason === 'Evicted';
    this.onTrouble({
      pod: name,
      env: pod.metadata?.labels?.[KLABEL.name] ?? name,
      kind: evicted ? 'evicted' : 'deleted',
      reason: evicted ? `evicted: ${pod.status?.message ?? 'by the kubelet'}` : 'its Pod was deleted outside berth',
    });
  }
}
