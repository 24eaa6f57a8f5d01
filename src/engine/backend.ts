// The three places where the environment manager used to assume a local host, each behind a
// small port a backend provides (issue 16):
// - how the daemon reaches an environment's agent: a byte stream, not a host socket path;
// - where the workspace lives: a host directory (or btrfs subvolume), or a Kubernetes volume;
// - how an environment is isolated: iptables on a local node, a NetworkPolicy on Kubernetes.
// The local implementations are in ./local; the Kubernetes ones in ./kubernetes.
import type { Duplex } from 'node:stream';
import type { NetworkInfo } from './engine.js';

/** A way to reach one environment's agent. Each open() is a fresh connection. */
export interface AgentChannel {
  /** Where it goes, for logs and errors ("unix:/path", "kubernetes exec ns/pod"). */
  readonly describe: string;
  /** Whether an agent may be listening yet; cheap, so a caller can poll it while starting. */
  ready(): Promise<boolean>;
  open(signal?: AbortSignal): Promise<Duplex>;
}

/** Where an environment's workspace is made and how it is removed. */
export interface WorkspaceProvisioner {
  /** Makes an empty workspace at `path` (a directory, or a subvolume where copy-on-write is on). */
  create(path: string): Promise<void>;
  /** Makes the workspace as a copy of a snapshot's tree, in constant time where it can. */
  cloneTree(tree: string, path: string, signal?: AbortSignal): Promise<void>;
  remove(path: string): Promise<void>;
}

/** The result of isolating environments on a network. */
export interface IsolationResult {
  applied: boolean;
  /** Every rule is in place (the bridge was there to match). */
  complete: boolean;
  detail: string;
}

/** How environments on a shared network are kept from each other and from the host. */
export interface Isolation {
  isolate(net: NetworkInfo): Promise<IsolationResult>;
}
