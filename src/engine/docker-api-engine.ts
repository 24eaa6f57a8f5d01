// The Engine over the Docker Engine API, as served by Docker and by Podman's
// compatible service (and so by Colima and Docker Desktop).
import type { Readable } from 'node:stream';
import { BerthError } from '../core/errors.js';
import { IMAGE_REF_RULE, isImageRef } from '../core/image-ref.js';
import type {
  ContainerInfo,
  ContainerSpec,
  ContainerStatus,
  Engine,
  EngineVersion,
  IdMap,
  ImageBuildOptions,
  ImageInfo,
  NetworkInfo,
} from './engine.js';
import { EngineHttp, engineMessage, type HttpResponse } from './http-client.js';

const API = '/v1.41';
/** An engine's 500 for an archive that is the client's fault: unreadable, or not unpackable there. */
const ARCHIVE_REFUSED =
  /error processing tar file|reading tar stream|archive\/tar|copier: put|read-only|unexpected EOF|invalid tar header/i;

export class DockerApiEngine implements Engine {
  private readonly http: EngineHttp;
  private cachedVersion: EngineVersion | undefined;
  private cachedRemap: IdMap | null | undefined;

  constructor(readonly endpoint: string) {
    this.http = new EngineHttp(endpoint);
  }

  async version(signal?: AbortSignal): Promise<EngineVersion> {
    if (this.cachedVersion) return this.cachedVersion;
    // /_ping answers in well under a millisecond, and its headers name the engine; Podman's
    // /version takes about 300 ms (it gathers host facts), and every command that finds the
    // engine asks this first.
    const ping = await this.http.stream('GET', '/_ping', signal);
    ping.resume();
    if (ping.statusCode === 200) {
      const h = (k: string): string | undefined => {
        const v = ping.headers[k];
        return Array.isArray(v) ? v[0] : v;
      };
      const libpod = h('libpod-api-version');
      const docker = /^Docker\/(\S+)/.exec(h('server') ?? '')?.[1];
      const apiVersion = h('api-version') ?? '?';
      if (libpod) return (this.cachedVersion = { name: 'podman', version: libpod, apiVersion });
      if (docker) return (this.cachedVersion = { name: 'docker', version: docker, apiVersion });
    }
    const res = await this.http.request('GET', `${API}/version`, undefined, signal);
    check(res, 'read the engine version');
    const v = JSON.parse(res.body.toString('utf8')) as {
      Version?: string;
      ApiVersion?: string;
      Components?: Array<{ Name?: string }>;
    };
    const isPodman = (v.Components ?? []).some((c) => /podman/i.test(c.Name ?? ''));
    this.cachedVersion = { name: isPodman ? 'podman' : 'docker', version: v.Version ?? '?', apiVersion: v.ApiVersion ?? '?' };
    return this.cachedVersion;
  }

  async remappedRoot(signal?: AbortSignal): Promise<IdMap | null> {
    if ((await this.version(signal)).name !== 'docker') return null;
    if (this.cachedRemap !== undefined) return this.cachedRemap;
    const res = await this.http.request('GET', `${API}/info`, undefined, signal);
    check(res, 'read the engine facts');
    const j = JSON.parse(res.body.toString('utf8')) as { DockerRootDir?: string; SecurityOptions?: string[] | null };
    // A remapping daemon says `name=userns`, and keeps its data under `ROOT/UID.GID`.
    const m = /\/(\d+)\.(\d+)\/?$/.exec(j.DockerRootDir ?? '');
    const on = (j.SecurityOptions ?? []).some((o) => /(^|,)name=userns(,|$)/.test(o));
    this.cachedRemap = on && m ? { uid: Number(m[1]), gid: Number(m[2]), size: 65536 } : null;
    return this.cachedRemap;
  }

  async inspectImage(ref: string, signal?: AbortSignal): Promise<ImageInfo | null> {
    // Only a well-formed reference reaches the engine: Docker answers `../x` with a redirect, and
    // Podman answers every malformed name with a 500.
    if (!isImageRef(ref)) throw new BerthError('invalid_request', `invalid image reference ${JSON.stringify(ref)}`, IMAGE_REF_RULE);
    const res = await this.http.request('GET', `${API}/images/${encodeURIComponent(ref)}/json`, undefined, signal);
    if (res.status === 404) return null;
    if (res.status === 400 || (res.status === 500 && /invalid reference|normalizing name|invalid format/i.test(engineMessage(res))))
      throw new BerthError('invalid_request', `invalid image reference ${ref}: ${engineMessage(res)}`, IMAGE_REF_RULE);
    check(res, `inspect image ${ref}`);
    const j = JSON.parse(res.body.toString('utf8')) as {
      Id: string;
      RepoTags?: string[] | null;
      Size?: number;
      RootFS?: { Layers?: string[] | null };
    };
    return {
      id: j.Id.startsWith('sha256:') ? j.Id : `sha256:${j.Id}`,
      tags: j.RepoTags ?? [],
      size: j.Size ?? 0,
      layers: j.RootFS?.Layers ?? [],
    };
  }

  async loadImage(archive: Readable, signal?: AbortSignal): Promise<void> {
    const res = await this.http.upload(`${API}/images/load?quiet=1`, archive, 'application/x-tar', signal);
    check(res, 'load image');
    const text = res.body.toString('utf8');
    if (/"error"\s*:/.test(text)) throw new BerthError('internal', `engine refused the image: ${text.slice(0, 300)}`);
  }

  async buildImage(context: Readable, opts: ImageBuildOptions, onLine: (line: string) => void, signal?: AbortSignal): Promise<string> {
    const q = new URLSearchParams({
      dockerfile: opts.dockerfile,
      t: opts.tag,
      buildargs: JSON.stringify(opts.args),
      labels: JSON.stringify(opts.labels),
      rm: '1',
      forcerm: '1',
      // The classic builder answers step by step ("Using cache"), which --explain reads.
      version: '1',
      // Podman: keep every step's layer, so a later rebuild reuses them.
      layers: 'true',
      ...(opts.target ? { target: opts.target } : {}),
    });
    const res = await this.http.uploadStreaming(`${API}/build?${q.toString()}`, context, 'application/x-tar', signal);
    let id = '';
    let error = '';
    const tail: string[] = [];
    let buf = '';
    let body = '';
    for await (const chunk of res) {
      buf += (chunk as Buffer).toString('utf8');
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        if (res.statusCode !== 200) {
          body += line;
          continue;
        }
        let j: { stream?: string; error?: string; aux?: { ID?: string } };
        try {
          j = JSON.parse(line) as typeof j;
        } catch {
          continue;
        }
        if (j.aux?.ID) id = j.aux.ID;
        if (j.error) error = j.error.trim();
        for (const l of (j.stream ?? '').split('\n')) {
          if (!l.trim()) continue;
          onLine(l);
          tail.push(l);
          if (tail.length > 20) tail.shift();
          const built = /^Successfully built ([0-9a-f]{12,64})$/.exec(l.trim());
          if (built && !id) id = built[1]!;
        }
      }
    }
    if (res.statusCode !== 200) throw new BerthError('build_failed', `the engine refused the build: ${(body || buf).slice(0, 300)}`);
    if (error) throw new BerthError('build_failed', error, undefined, { cause: tail.join('\n') });
    if (!id) throw new BerthError('build_failed', `the engine built no image: ${tail.slice(-3).join(' / ')}`);
    return id.startsWith('sha256:') ? id : ((await this.inspectImage(id, signal))?.id ?? id);
  }

  async pullFromRegistry(
    ref: string,
    opts: { tlsVerify: boolean; onStatus?: (line: string) => void },
    signal?: AbortSignal,
  ): Promise<boolean> {
    if ((await this.version(signal)).name !== 'podman') return false;
    const q = new URLSearchParams({ reference: ref, tlsVerify: String(opts.tlsVerify), quiet: 'false' });
    const res = await this.http.stream('POST', `/v4.0.0/libpod/images/pull?${q.toString()}`, signal);
    const errors: string[] = [];
    let text = '';
    let buf = '';
    for await (const chunk of res) {
      buf += (chunk as Buffer).toString('utf8');
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        text += line;
        try {
          const j = JSON.parse(line) as { stream?: string; error?: string };
          if (j.error) errors.push(j.error);
          if (j.stream) opts.onStatus?.(j.stream.trim());
        } catch {
          // not a JSON line: kept in `text` for the error
        }
      }
    }
    if (buf.trim()) text += buf;
    if ((res.statusCode ?? 500) >= 300 || errors.length) {
      let message = errors.join('; ');
      if (!message) {
        try {
          message = (JSON.parse(text) as { message?: string; cause?: string }).message ?? text;
        } catch {
          message = text || `HTTP ${res.statusCode}`;
        }
      }
      const bad = /digest did not match, expected (sha256:[0-9a-f]{12})/i.exec(message);
      if (bad) throw new BerthError('corrupt', `layer ${bad[1]} from the registry does not match its digest`);
      if (/manifest unknown|not found|no such image/i.test(message))
        throw new BerthError('image_missing', `the registry has no ${ref}`, 'push it from a node that has it: berth toolchain push');
      if (/connection refused|no route to host|i\/o timeout|no such host|dial tcp/i.test(message))
        throw new BerthError('engine_unavailable', `the engine cannot reach the registry for ${ref}: ${message.split('\n')[0]}`);
      throw new BerthError('internal', `the engine could not pull ${ref}: ${message.split('\n')[0]}`);
    }
    return true;
  }

  async putArchive(id: string, dir: string, tar: Readable, signal?: AbortSignal): Promise<void> {
    const res = await this.http.upload(
      `${API}/containers/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(dir)}`,
      tar,
      'application/x-tar',
      signal,
      'PUT',
    );
    if (res.status >= 200 && res.status < 300) return;
    const msg = oneLine(engineMessage(res));
    if (res.status === 404) throw new BerthError('not_found', `no directory ${dir} in the container (${msg})`);
    if (res.status === 409) throw new BerthError('not_running', `the container cannot take an archive now (${msg})`);
    if (/no space left on device|disk quota exceeded/i.test(msg))
      throw new BerthError('no_space', `no space to unpack the archive into ${dir}: ${msg}`);
    // What the archive holds, or where it goes, is the client's to fix: the engines answer 400 or
    // 403, and answer a 500 for a tar they cannot read or cannot unpack there (Docker: "Error
    // processing tar file", Podman: "reading tar stream" or "copier: put", a read-only mount).
    if (res.status === 400 || res.status === 403 || (res.status === 500 && ARCHIVE_REFUSED.test(msg)))
      throw new BerthError('invalid_request', `the engine refused the archive for ${dir}: ${msg}`);
    check(res, `unpack an archive into ${dir}`);
  }

  async exportImage(ref: string, signal?: AbortSignal): Promise<Readable> {
    const res = await this.http.stream('GET', `${API}/images/${encodeURIComponent(ref)}/get`, signal);
    if (res.statusCode === 404) {
      res.resume();
      throw new BerthError('image_missing', `image ${ref} is not on this node`);
    }
    if ((res.statusCode ?? 500) >= 300) {
      res.resume();
      throw new BerthError('internal', `engine could not export ${ref} (HTTP ${res.statusCode})`);
    }
    return res;
  }

  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    const podman = (await this.version(signal)).name === 'podman';
    // Podman 4.3 runs every container it is asked for over the API with its default runtime (it
    // ignores HostConfig.Runtime, and libpod's oci_runtime too): never a weaker tier than asked.
    if (podman && spec.runtime)
      throw new BerthError(
        'isolation_unavailable',
        `this Podman engine cannot run a container with ${spec.runtime}: its API runs every container with the engine's default runtime`,
        'use a Docker engine with runsc among its runtimes (scripts/private-engines.sh), or --isolation runc',
      );
    const body = {
      Image: spec.image,
      Cmd: spec.cmd,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Labels: spec.labels,
      WorkingDir: spec.workdir,
      Hostname: spec.name.slice(0, 63),
      HostConfig: {
        Binds: [
          ...spec.mounts.map((m) => `${m.source}:${m.target}:${m.readOnly ? 'ro' : 'rw'}`),
          ...spec.volumes.map((v) => `${v.name}:${v.target}:rw`),
        ],
        Memory: spec.memoryBytes,
        MemorySwap: spec.memoryBytes,
        NanoCpus: spec.nanoCpus,
        PidsLimit: spec.pidsLimit,
        Ulimits: spec.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
        NetworkMode: spec.network,
        Init: spec.init,
        SecurityOpt: ['no-new-privileges'],
        CapDrop: DROPPED_CAPS,
        ...(spec.runtime ? { Runtime: spec.runtime } : {}),
        ...(spec.idMap && podman ? { UsernsMode: podmanUserns(spec.idMap) } : {}),
        // No namespace asked for, on a daemon that remaps every container: this one is not.
        ...(spec.idMap === null && !podman ? { UsernsMode: 'host' } : {}),
      },
    };
    const res = await this.http.request('POST', `${API}/containers/create?name=${encodeURIComponent(spec.name)}`, body, signal);
    return this.created(res, spec);
  }

  private created(res: HttpResponse, spec: ContainerSpec): string {
    if (res.status === 404)
      throw new BerthError('image_missing', `image ${spec.image} is not on this node`, 'build it with `berth toolchain build`');
    if (res.status === 409)
      throw new BerthError(
        'already_exists',
        `a container named ${spec.name} already exists in the engine`,
        'remove it or pick another name',
      );
    if (
      spec.runtime &&
      res.status >= 400 &&
      /unknown runtime|unknown or invalid runtime name|runtime .* not found|no such runtime/i.test(engineMessage(res))
    )
      throw new BerthError(
        'isolation_unavailable',
        `the engine has no runtime ${spec.runtime}`,
        'install runsc and name it among the engine runtimes (scripts/private-engines.sh shows how)',
      );
    check(res, 'create container');
    return (
      (JSON.parse(res.body.toString('utf8')) as { Id?: string; id?: string }).Id ??
      (JSON.parse(res.body.toString('utf8')) as { id: string }).id
    );
  }

  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    const res = await this.http.request('POST', `${API}/containers/${id}/start`, undefined, signal);
    if (res.status === 304) return;
    check(res, 'start container');
  }

  async removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    let res = await this.http.request('DELETE', `${API}/containers/${id}?force=true&v=true`, undefined, signal);
    // Podman 4.3 here sometimes fails a removal with EBUSY on the container's shm directory
    // (seen in CI right after a copy into the container): the mount it unmounted is still
    // busy for a moment. The container is left in place, so asking again is safe.
    for (let i = 0; i < 20 && res.status >= 500 && /device or resource busy/i.test(engineMessage(res)); i++) {
      await new Promise((r) => setTimeout(r, 250));
      res = await this.http.request('DELETE', `${API}/containers/${id}?force=true&v=true`, undefined, signal);
    }
    if (res.status === 404) return;
    // Someone else is removing it already: wait for that to finish.
    if (res.status === 409 && /already in progress/i.test(engineMessage(res))) {
      for (let i = 0; i < 300; i++) {
        if (!(await this.inspectContainer(id, signal))) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    check(res, 'remove container');
  }

  async inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInfo | null> {
    const res = await this.http.request('GET', `${API}/containers/${id}/json`, undefined, signal);
    if (res.status === 404) return null;
    check(res, 'inspect container');
    const j = JSON.parse(res.body.toString('utf8')) as {
      Id: string;
      Name: string;
      Image: string;
      State?: { Status?: string; Pid?: number; Paused?: boolean };
      Config?: { Labels?: Record<string, string> | null };
      NetworkSettings?: { Networks?: Record<string, { IPAddress?: string; Gateway?: string }> | null };
    };
    const networks: Record<string, { ip: string; gateway: string }> = {};
    for (const [name, n] of Object.entries(j.NetworkSettings?.Networks ?? {})) {
      if (n.IPAddress) networks[name] = { ip: n.IPAddress, gateway: n.Gateway ?? '' };
    }
    return {
      networks,
      id: j.Id,
      name: j.Name.replace(/^\//, ''),
      status: normalizeStatus(j.State?.Paused ? 'paused' : j.State?.Status),
      labels: j.Config?.Labels ?? {},
      pid: j.State?.Pid || null,
      image: j.Image,
    };
  }

  async listContainers(labels: Record<string, string>, signal?: AbortSignal): Promise<ContainerInfo[]> {
    const filters = JSON.stringify({ label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) });
    const res = await this.http.request('GET', `${API}/containers/json?all=true&filters=${encodeURIComponent(filters)}`, undefined, signal);
    check(res, 'list containers');
    const list = JSON.parse(res.body.toString('utf8')) as Array<{
      Id: string;
      Names?: string[];
      Image: string;
      State?: string;
      Labels?: Record<string, string> | null;
    }>;
    return list.map((c) => ({
      id: c.Id,
      name: (c.Names?.[0] ?? '').replace(/^\//, ''),
      status: normalizeStatus(c.State),
      labels: c.Labels ?? {},
      pid: null,
      image: c.Image,
    }));
  }

  async cpuUsageNs(id: string, signal?: AbortSignal): Promise<number> {
    const res = await this.http.request('GET', `${API}/containers/${id}/stats?stream=false&one-shot=true`, undefined, signal);
    check(res, 'container stats');
    const j = JSON.parse(res.body.toString('utf8')) as { cpu_stats?: { cpu_usage?: { total_usage?: number } } };
    return j.cpu_stats?.cpu_usage?.total_usage ?? 0;
  }

  async pauseContainer(id: string, signal?: AbortSignal): Promise<void> {
    check(await this.http.request('POST', `${API}/containers/${id}/pause`, undefined, signal), 'pause container');
  }

  async unpauseContainer(id: string, signal?: AbortSignal): Promise<void> {
    check(await this.http.request('POST', `${API}/containers/${id}/unpause`, undefined, signal), 'resume container');
  }

  async ensureNetwork(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<NetworkInfo> {
    let res = await this.http.request('GET', `${API}/networks/${encodeURIComponent(name)}`, undefined, signal);
    if (res.status === 404) {
      const created = await this.http.request(
        'POST',
        `${API}/networks/create`,
        {
          Name: name,
          Driver: 'bridge',
          Labels: labels,
          // Docker honours this; for Podman the node adds the same rule itself.
          Options: { 'com.docker.network.bridge.enable_icc': 'false' },
        },
        signal,
      );
      if (created.status !== 409) check(created, `create network ${name}`);
      res = await this.http.request('GET', `${API}/networks/${encodeURIComponent(name)}`, undefined, signal);
    }
    check(res, `inspect network ${name}`);
    const j = JSON.parse(res.body.toString('utf8')) as {
      Id: string;
      Name: string;
      Options?: Record<string, string> | null;
      IPAM?: { Config?: Array<{ Subnet?: string }> | null };
    };
    const opts = j.Options ?? {};
    const bridge =
      opts['com.docker.network.bridge.name'] ?? (j.Id && (await this.version(signal)).name === 'docker' ? `br-${j.Id.slice(0, 12)}` : null);
    return {
      name: j.Name,
      id: j.Id,
      bridge,
      subnets: (j.IPAM?.Config ?? []).map((c) => c.Subnet ?? '').filter(Boolean),
    };
  }

  async ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const have = await this.http.request('GET', `${API}/volumes/${encodeURIComponent(name)}`, undefined, signal);
    if (have.status === 200) return;
    const res = await this.http.request('POST', `${API}/volumes/create`, { Name: name, Labels: labels }, signal);
    if (res.status !== 409) check(res, `create volume ${name}`);
  }

  async listVolumes(labels: Record<string, string>, signal?: AbortSignal): Promise<string[]> {
    const filters = JSON.stringify({ label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) });
    const res = await this.http.request('GET', `${API}/volumes?filters=${encodeURIComponent(filters)}`, undefined, signal);
    check(res, 'list volumes');
    return ((JSON.parse(res.body.toString('utf8')) as { Volumes?: Array<{ Name: string }> | null }).Volumes ?? []).map((v) => v.Name);
  }

  async removeVolume(name: string, signal?: AbortSignal): Promise<void> {
    const res = await this.http.request('DELETE', `${API}/volumes/${encodeURIComponent(name)}`, undefined, signal);
    if (res.status === 404) return;
    check(res, `remove volume ${name}`);
  }

  close(): void {
    this.http.close();
  }
}

function normalizeStatus(s: string | undefined): ContainerStatus {
  switch (s) {
    case 'created':
    case 'configured':
      return 'created';
    case 'running':
      return 'running';
    case 'paused':
      return 'paused';
    case 'exited':
    case 'stopped':
      return 'exited';
    case 'dead':
      return 'dead';
    default:
      return 'unknown';
  }
}

/** No raw sockets (no ARP or packet spoofing on the shared bridge), no device nodes, no audit, no chroot. */
const DROPPED_CAPS = ['NET_RAW', 'MKNOD', 'AUDIT_WRITE', 'SYS_CHROOT'];

/** Podman's `--userns` for exactly this mapping (an `auto` mode whose mapping is given whole needs no /etc/subuid entry of its own). */
function podmanUserns(ids: IdMap): string {
  return `auto:uidmapping=0:${ids.uid}:${ids.size},gidmapping=0:${ids.gid}:${ids.size}`;
}

/** The engine's message on one line (a user's error is one line). */
function oneLine(msg: string): string {
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

function check(res: HttpResponse, what: string): void {
  if (res.status >= 200 && res.status < 300) return;
  const msg = engineMessage(res);
  if (res.status === 404) throw new BerthError('not_found', `could not ${what}: ${msg}`);
  throw new BerthError('internal', `engine could not ${what}: ${msg}`);
}
