// The local node's side of the backend ports (src/engine/backend.ts): the agent over a unix
// socket in the environment's run directory, workspaces as host directories or btrfs
// subvolumes, and isolation by iptables. The environment manager uses these unchanged from
// before the ports existed; a Kubernetes node provides its own (src/engine/kubernetes).
import { thawTree } from '../workspace/trees.js';
import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import { connectUnix } from '../agent/client.js';
import type { Duplex } from 'node:stream';
import type { AgentChannel, Isolation, WorkspaceProvisioner } from '../engine/backend.js';
import { createSubvolume, deleteSubvolume, isSubvolume } from '../workspace/btrfs.js';
import { isolateNetwork } from './firewall.js';

/** The agent's unix socket, which the environment's run directory holds. */
export class UnixSocketChannel implements AgentChannel {
  constructor(readonly path: string) {}

  get describe(): string {
    return `unix:${this.path}`;
  }

  /** The environment can write its run directory: follow only a real socket, never a link. */
  ready(): Promise<boolean> {
    try {
      return Promise.resolve(lstatSync(this.path).isSocket());
    } catch {
      return Promise.resolve(false);
    }
  }

  open(signal?: AbortSignal): Promise<Duplex> {
    return connectUnix(this.path, signal);
  }
}

/** Host directories, or btrfs subvolumes where the node keeps copy-on-write trees. */
export class HostWorkspaces implements WorkspaceProvisioner {
  constructor(private readonly cow: boolean) {}

  async create(path: string): Promise<void> {
    if (this.cow) await createSubvolume(path);
    else mkdirSync(path);
  }

  /** In constant time on copy-on-write storage; a whole copy elsewhere. */
  cloneTree(tree: string, path: string, signal?: AbortSignal): Promise<void> {
    return thawTree(tree, path, { cow: this.cow, signal });
  }

  async remove(path: string): Promise<void> {
    if (this.cow && (await isSubvolume(path))) await deleteSubvolume(path);
    rmSync(path, { recursive: true, force: true });
  }
}

/** iptables rules in berth's own chains (src/env/firewall.ts). */
export const iptablesIsolation: Isolation = { isolate: isolateNetwork };
