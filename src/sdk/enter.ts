// Stepping into an agent's context from another node, and sending the work back: `enter` pulls
// an environment here (identity, toolchain by digest, commits, work, caches), `push` applies the
// changes made here to the environment they came from. Both are orchestration over two nodes'
// clients; the nodes do the work that needs an engine, a registry or a workspace.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { NodeClient } from '../client/client.js';
import type { ApplyResult, CreatedEnv } from '../core/api.js';
import { cacheTarget } from '../core/cache-kinds.js';
import { BerthError, typedError } from '../core/errors.js';
import { berthCache } from '../core/home.js';
import { encodeIdentity, type Identity } from '../core/identity.js';
import { connectLocal } from './connect.js';
import { clientFor, loadNodes, target } from './nodes.js';
import { pullToolchain, registryFromEnv } from './toolchain.js';
import { cacheToFile, fileToCache, moveSnapshot, pipeCache, type ProgressFn } from './transfer.js';

export interface EnterOptions {
  /** The local environment's name (default: the remote one's). */
  as?: string;
  /** The registry the toolchain comes from when this node lacks it (default: the node's, then BERTH_REGISTRY). */
  registry?: string;
  onProgress?: ProgressFn;
  /** A line per step, for timing (BERTH_TRACE in the CLI). */
  trace?: (label: string) => void;
}

export interface Entered {
  env: CreatedEnv;
  enterMs: number;
  transferred: { blobs: number; bytes: number };
  toolchainPulled: boolean;
}

/**
 * Pulls `NODE/ENV` into a local environment: its identity with the agent's work pinned in a
 * fresh snapshot, the toolchain by digest (pulled by this node from the registry beside the
 * rest), the commits, the work, and the caches. Nothing is left half-made when it fails.
 */
export async function enter(what: string, opts: EnterOptions = {}): Promise<Entered> {
  const show: ProgressFn = opts.onProgress ?? (() => {});
  const trace = opts.trace ?? (() => {});
  const t = await target(what);
  if (!t.node) {
    t.client.close();
    throw typedError('usage', `${what} is already on this node`, `use \`berth shell ${what}\``);
  }
  const t0 = performance.now();
  const remote = t.client;
  const entry = loadNodes()[t.node]!;
  let local: NodeClient | undefined;
  const localName = opts.as ?? t.env;
  let created = false;
  let pulling: Promise<unknown> | null = null;
  // Caches fetched early, by kind (step 3); their files go when enter ends, whatever happens.
  const staged = new Map<string, { dir: string; path: string; done: Promise<void> }>();
  const cancel = new AbortController();
  try {
    local = await connectLocal({ autostart: true });
    // 1. The identity, with the agent's work pinned in a fresh snapshot.
    show(`snapshot of ${what}`);
    trace('enter: start');
    const info = await remote.getEnv(t.env);
    trace('enter: remote environment described');
    // 2. The toolchain, by digest, from the registry when this node lacks it. This node pulls
    //    it beside steps 1, 4 and 5: they wait on the link, it mostly on this machine's disk.
    //    (The steps are numbered as in docs/nodes.md.)
    const haveImage = (await local.call('toolchainStatus', { query: { digest: info.toolchain } })).present;
    // 3. Caches this node has no volume for at all start arriving now too, into a file here, and
    //    go into the local environment once it exists; the others are checked and copied then.
    const have = new Set((await local.call('listCaches')).caches.map((c) => `${c.kind}-${c.key}`));
    for (const [kind, key] of Object.entries(info.cacheKeys)) {
      const dir = cacheTarget(kind);
      if (!dir || have.has(`${kind}-${key}`)) continue;
      const stageDir = join(berthCache(), 'staging');
      mkdirSync(stageDir, { recursive: true });
      const path = join(stageDir, `${process.pid}-${kind}.tar`);
      const done = cacheToFile(remote, t.env, dir, path, cancel.signal);
      done.catch(() => {});
      staged.set(kind, { dir, path, done });
    }
    trace(`enter: toolchain ${haveImage ? 'here' : 'missing'}, ${staged.size} cache(s) fetching early`);
    let pulled = '';
    const step = (m: string, f?: number): void => show(pulled ? `${m} · toolchain ${pulled}` : m, f);
    if (!haveImage) {
      const registry = opts.registry ?? entry.registry ?? registryFromEnv();
      if (!registry)
        throw new BerthError(
          'image_missing',
          `toolchain ${info.toolchain.slice(0, 19)} is not on this node and no registry is known`,
          'give --registry, or set BERTH_REGISTRY',
        );
      pulled = 'pull starting';
      const phases = new Set<string>();
      pulling = pullToolchain(local, info.toolchain, registry, {
        signal: cancel.signal,
        onProgress: ({ message, fraction }) => {
          const phase = message.split(' ')[0]!;
          if (!phases.has(phase)) trace(`enter: toolchain ${phase} started`);
          phases.add(phase);
          pulled = fraction === undefined ? message : `${message} ${Math.round(fraction * 100)}%`;
        },
      }).finally(() => (pulled = ''));
      // Awaited below; an earlier failure ends the call, and the node finishes the pull for a retry.
      pulling.catch(() => {});
    }
    const snap = await remote.snap(t.env);
    trace('enter: remote snapshot taken');
    const identity: Identity = {
      repo: info.repo,
      ref: info.commit,
      toolchain: info.toolchain,
      snapshot: snap.id,
      ...(Object.keys(info.cacheKeys).length ? { cacheKeys: info.cacheKeys } : {}),
    };
    // 4. The snapshot's blobs, only those missing here (a retry sends only what is left).
    const moved = await moveSnapshot(
      remote,
      local,
      snap.id,
      { repo: info.repo, toolchain: info.toolchain, cacheKeys: info.cacheKeys, env: localName, reason: 'entered' },
      step,
    );
    trace(`enter: ${moved.transferred.blobs} blob(s) moved`);
    // 5. The commits (the base, and the agent's own), with git's own transport through berth.
    step('commits');
    const head = moved.head.commit && moved.head.commit !== info.commit ? moved.head.commit : null;
    await local.call('fetchRepo', {
      body: {
        repo: info.repo,
        commits: head ? [info.commit, head] : [info.commit],
        remote: { url: entry.url, token: remote.token, env: t.env, ...(entry.ca ? { ca: readCa(entry.ca) } : {}) },
      },
    });
    trace('enter: commits fetched');
    if (pulling) {
      const tick = setInterval(() => step('waiting for the toolchain'), 200);
      try {
        await pulling;
      } finally {
        clearInterval(tick);
      }
      trace('enter: toolchain in the engine');
    }
    // 6. A local environment from the identity.
    step('starting the local environment');
    const env = await local.createEnv({
      name: localName,
      identity: encodeIdentity(identity),
      noPool: true,
      upstream: { node: t.node, env: t.env, url: entry.url, snapshot: snap.id },
    });
    created = true;
    trace('enter: local environment running');
    // 7. The agent's commits as commits: the branch moves to its HEAD, the rest stays as changes.
    if (head) {
      const r = await local.exec(localName, { argv: ['git', 'reset', '-q', '--mixed', head] });
      if (r.exitCode !== 0) throw new BerthError('internal', `could not put ${localName} on the agent's commit ${head.slice(0, 12)}`);
    }
    // 8. Caches by key: the ones fetched beside the rest go in from their files; the others come
    //    from the remote environment when the local volume is empty.
    for (const kind of Object.keys(info.cacheKeys)) {
      const dir = cacheTarget(kind);
      if (!dir) continue;
      const early = staged.get(kind);
      if (early) {
        step(`cache ${kind}`);
        await early.done;
        await fileToCache(early.path, local, localName, early.dir);
        continue;
      }
      const probe = await local.exec(localName, { argv: ['sh', '-c', `ls -A ${dir} 2>/dev/null | head -c 1`] });
      if (Buffer.from(probe.stdout, 'base64').length > 0) continue;
      step(`cache ${kind}`);
      await pipeCache(remote, t.env, local, localName, dir);
    }
    trace('enter: caches in place');
    return { env, enterMs: Math.round(performance.now() - t0), transferred: moved.transferred, toolchainPulled: !haveImage };
  } catch (err) {
    if (created && local) await local.removeEnv(localName, { discard: true }).catch(() => {});
    throw err;
  } finally {
    // A pull still going goes on in this node (a retry joins it or finds it done).
    cancel.abort();
    for (const { path: f } of staged.values()) {
      rmSync(f, { force: true });
      rmSync(f + '.partial', { force: true });
    }
    remote.close();
    local?.close();
  }
}

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw typedError('usage', `cannot read the CA file ${path}`);
  }
}

export interface Pushed extends ApplyResult {
  pushMs: number;
  /** Where the changes went: NODE/ENV. */
  to: string;
}

/**
 * Sends the changes of an environment made by `enter` back to the one it came from. When the
 * agent changed the same files meanwhile, nothing is overwritten: a ConflictError whose
 * `files` lists them.
 */
export async function push(name: string, opts: { onProgress?: ProgressFn } = {}): Promise<Pushed> {
  const show: ProgressFn = opts.onProgress ?? (() => {});
  const local = await connectLocal({ autostart: true });
  const t0 = performance.now();
  try {
    const env = await local.getEnv(name);
    if (!env.upstream)
      throw new BerthError(
        'invalid_request',
        `${name} was not entered from another node`,
        'push works on environments made by `berth enter NODE/ENV`',
      );
    const up = env.upstream;
    const remote = clientFor(up.node);
    try {
      const mine = await local.snap(name, { artifacts: [] });
      await moveSnapshot(
        local,
        remote,
        mine.id,
        { repo: env.repo, toolchain: env.toolchain, cacheKeys: env.cacheKeys, env: up.env, reason: 'pushed' },
        show,
      );
      let r: ApplyResult;
      try {
        r = await remote.apply(up.env, { snapshot: mine.id, since: up.snapshot });
      } catch (err) {
        if (err instanceof BerthError && err.code === 'conflict') {
          const files = /in (.+)$/.exec(err.message)?.[1]?.split(', ') ?? [];
          throw Object.assign(
            typedError(
              'conflict',
              `push failed: the agent changed ${files.length} of the same file(s); nothing was overwritten`,
              `see its changes with \`berth exec ${up.node}/${up.env} -- git diff\`, then enter again`,
            ),
            { files },
          );
        }
        throw err;
      }
      await local.call('setUpstream', { params: { name }, body: { upstream: { ...up, snapshot: mine.id } } });
      return { ...r, pushMs: Math.round(performance.now() - t0), to: `${up.node}/${up.env}` };
    } finally {
      remote.close();
    }
  } finally {
    local.close();
  }
}
