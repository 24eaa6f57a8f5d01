// The one interface every backend implements. It speaks in berth's terms (a container
// spec, labels, mounts, limits), not in any engine's, so a Kubernetes backend can implement
// it with pods later.
import type { Readable } from 'node:stream';

export interface Mount {
  source: string; // host path
  target: string; // path in the environment
  readOnly: boolean;
}

export interface ContainerSpec {
  name: string;
  image: string;
  cmd: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  mounts: Mount[];
  /** Named engine volumes (caches), mounted read-write. */
  volumes: Array<{ name: string; target: string }>;
  workdir: string;
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  ulimits: Array<{ name: string; soft: number; hard: number }>;
  /** 'none' for no network, or the name of an engine network. */
  network: string;
  /** An init process as PID 1 that reaps orphans. */
  init: boolean;
  runtime?: string;
  /**
   * Root in the container is this host uid/gid range. Podman maps each container so; Docker
   * 20.10 maps every container of a daemon started with `userns-remap`, and ignores this.
   */
  idMap?: IdMap | null;
}

export interface IdMap {
  /** The host uid that is root (uid 0) in the container. */
  uid: number;
  /** The host gid that is gid 0 in the container. */
  gid: number;
  /** How many ids are mapped, from 0 up. */
  size: number;
}

export type ContainerStatus = 'created' | 'running' | 'paused' | 'exited' | 'dead' | 'unknown';

export interface ContainerInfo {
  id: string;
  name: string;
  status: ContainerStatus;
  labels: Record<string, string>;
  pid: number | null;
  image: string;
  /** Its address and gateway on each network it is on (filled in by inspect only). */
  networks?: Record<string, { ip: string; gateway: string }>;
}

export interface ImageInfo {
  id: string; // sha256:...
  tags: string[];
  size: number;
  /** The uncompressed layers' digests (diff ids), base first. */
  layers: string[];
}

export interface NetworkInfo {
  name: string;
  id: string;
  /** The host-side bridge interface, when the engine reports one. */
  bridge: string | null;
  subnets: string[];
}

export interface ImageBuildOptions {
  /** The Dockerfile's path inside the context. */
  dockerfile: string;
  tag: string;
  args: Record<string, string>;
  target?: string;
  labels: Record<string, string>;
}

export interface EngineVersion {
  name: 'podman' | 'docker' | 'unknown';
  version: string;
  apiVersion: string;
}

export interface Engine {
  readonly endpoint: string;
  version(signal?: AbortSignal): Promise<EngineVersion>;
  /** The range a daemon remaps every container to (dockerd's userns-remap), or null. */
  remappedRoot(signal?: AbortSignal): Promise<IdMap | null>;
  inspectImage(ref: string, signal?: AbortSignal): Promise<ImageInfo | null>;
  loadImage(archive: Readable, signal?: AbortSignal): Promise<void>;
  /**
   * Pulls an image from a registry with the engine's own client, where berth can tell it the
   * registry's TLS choice per pull (Podman's libpod API). Resolves false when this engine has no
   * such pull, and the caller streams the image in with loadImage instead.
   */
  pullFromRegistry(ref: string, opts: { tlsVerify: boolean; onStatus?: (line: string) => void }, signal?: AbortSignal): Promise<boolean>;
  /**
   * Builds an image from a Dockerfile in a build context (a tar stream), with the engine's own
   * layer cache. Each line of the builder's output goes to `onLine`; resolves with the image id.
   * A failing step rejects with `build_failed` (its output kept in the message's tail), and the
   * engine removes the step's intermediate container.
   */
  buildImage(context: Readable, opts: ImageBuildOptions, onLine: (line: string) => void, signal?: AbortSignal): Promise<string>;
  /** The image as a docker-archive tar stream. */
  exportImage(ref: string, signal?: AbortSignal): Promise<Readable>;
  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string>;
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  removeContainer(id: string, signal?: AbortSignal): Promise<void>;
  inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInfo | null>;
  listContainers(labels: Record<string, string>, signal?: AbortSignal): Promise<ContainerInfo[]>;
  pauseContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** The CPU time the container's processes have used, in nanoseconds (its cgroup's count). */
  cpuUsageNs(id: string, signal?: AbortSignal): Promise<number>;
  unpauseContainer(id: string, signal?: AbortSignal): Promise<void>;
  ensureNetwork(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<NetworkInfo>;
  ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  listVolumes(labels: Record<string, string>, signal?: AbortSignal): Promise<string[]>;
  removeVolume(name: string, signal?: AbortSignal): Promise<void>;
  /**
   * Unpacks a tar stream into a directory of the container, volumes included. The engine does
   * the unpacking confined to the container's filesystem, so the archive's links cannot reach
   * the host.
   */
  putArchive(id: string, dir: string, tar: Readable, signal?: AbortSignal): Promise<void>;
  close(): void;
}
