// Many nodes: node add/ls/rm, ls --all, enter (pull local, or --attach), push, forward.
import { createServer } from 'node:net';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BerthError } from '../../core/errors.js';
import { encodeIdentity, type Identity } from '../../core/identity.js';
import type { EnvInfo, SnapshotInfo } from '../../core/api.js';
import type { NodeClient } from '../../client/client.js';
import { bool, flag, parseArgs } from '../args.js';
import { connectLocal } from '../../sdk/connect.js';
import { clientFor, loadNodes, normalizeUrl, saveNodes, target } from '../../sdk/nodes.js';
import { printJson, statusCell, table } from '../output.js';
import { byAttention } from '../../core/attention.js';
import { Progress, trace } from '../progress.js';
import { cmdShell } from './runtime.js';
import { transferToolchain } from './toolchain.js';
import { discoverEngine } from '../../engine/discovery.js';
import type { Engine } from '../../engine/engine.js';
import { registryFromEnv } from '../../remote/registry.js';
import { cacheTarget, cacheVolumeName } from '../../workspace/cache-keys.js';
import { validateManifest } from '../../workspace/manifest.js';
import { cacheDir } from '../../toolchain/base-image.js';

export async function cmdNode(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json'], value: ['token-file', 'token', 'ca', 'registry'] });
  const nodes = loadNodes();
  if (sub === 'add') {
    const [name, url] = p.positionals;
    if (!name || !url) throw new BerthError('usage', 'usage: berth node add NAME tcp://HOST:PORT --token-file FILE [--ca FILE]');
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name))
      throw new BerthError('invalid_name', `invalid node name ${JSON.stringify(name)}`, 'use lowercase letters, digits and dashes');
    const entry = {
      url: normalizeUrl(url),
      ...(flag(p, 'token-file') ? { tokenFile: flag(p, 'token-file') } : {}),
      ...(flag(p, 'token') ? { token: flag(p, 'token') } : {}),
      ...(flag(p, 'ca') ? { ca: flag(p, 'ca') } : {}),
      ...(flag(p, 'registry') ? { registry: flag(p, 'registry') } : {}),
    };
    saveNodes({ ...nodes, [name]: entry });
    const client = clientFor(name);
    try {
      const info = await client.node(AbortSignal.timeout(10_000));
      if (bool(p, 'json')) printJson({ name, ...entry, node: info });
      else process.stdout.write(`added ${name}: node ${info.node} (${info.engine.name} ${info.engine.version}) at ${entry.url}\n`);
    } catch (err) {
      saveNodes(nodes); // nothing half-added
      throw err;
    } finally {
      client.close();
    }
    return 0;
  }
  if (sub === 'rm') {
    const name = p.positionals[0];
    if (!name || !nodes[name]) throw new BerthError('not_found', `no node named ${name ?? ''}`, 'see `berth node ls`');
    delete nodes[name];
    saveNodes(nodes);
    if (bool(p, 'json')) printJson({ removed: name });
    else process.stdout.write(`removed ${name}\n`);
    return 0;
  }
  if (sub === 'ls') {
    const rows = await Promise.all(
      Object.entries(nodes).map(async ([name, n]) => {
        const c = clientFor(name);
        try {
          const info = await c.node(AbortSignal.timeout(5000));
          return { name, url: n.url, reachable: true, node: info.node, engine: `${info.engine.name} ${info.engine.version}`, error: null };
        } catch (err) {
          return { name, url: n.url, reachable: false, node: null, engine: null, error: (err as Error).message };
        } finally {
          c.close();
        }
      }),
    );
    if (bool(p, 'json')) printJson(rows);
    else
      process.stdout.write(
        table([
          ['NODE', 'URL', 'STATUS', 'ENGINE'],
          ...rows.map((r) => [r.name, r.url, r.reachable ? 'up' : `down: ${r.error ?? ''}`, r.engine ?? '-']),
        ]) + '\n',
      );
    return 0;
  }
  throw new BerthError('usage', 'usage: berth node add NAME tcp://HOST:PORT --token-file FILE | berth node ls | berth node rm NAME');
}

/** `ls --all`: every environment on every node, side by side. */
export async function listAll(json: boolean): Promise<number> {
  const local = await connectLocal({ autostart: true });
  const results: Array<EnvInfo & { node: string }> = [];
  const problems: string[] = [];
  const jobs: Array<Promise<void>> = [
    local.listEnvs().then((l) => void results.push(...l.map((e) => ({ ...e, node: 'local' })))),
    ...Object.keys(loadNodes()).map(async (name) => {
      const c = clientFor(name);
      try {
        const l = await c.listEnvs(AbortSignal.timeout(10_000));
        results.push(...l.map((e) => ({ ...e, node: name })));
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
      } finally {
        c.close();
      }
    }),
  ];
  await Promise.all(jobs);
  local.close();
  results.sort((a, b) => (a.node + a.name).localeCompare(b.node + b.name));
  // Those waiting for a human first, then the blocked; by node and name within each.
  const envs = byAttention(results);
  if (json) printJson({ envs, unreachable: problems });
  else {
    const rows = [['NODE/NAME', 'STATE', 'STATUS', 'COMMIT', 'AGENT', 'TASK']];
    for (const e of envs)
      rows.push([
        e.node === 'local' ? e.name : `${e.node}/${e.name}`,
        e.state,
        statusCell(e),
        e.commit.slice(0, 12),
        e.labels.agent ?? '-',
        e.labels.task ?? '-',
      ]);
    process.stdout.write(table(rows) + '\n');
    for (const p of problems) process.stderr.write(`berth: node ${p}\n`);
  }
  return problems.length ? 10 : 0;
}

/** Copies the blobs a snapshot needs from one node to another, only those missing there. */
async function moveSnapshot(
  from: NodeClient,
  to: NodeClient,
  id: string,
  meta: { repo: string; toolchain: string; cacheKeys: Record<string, string>; env: string; reason: string },
  show: (message: string, fraction?: number) => void,
): Promise<SnapshotInfo & { transferred: { blobs: number; bytes: number }; head: { branch: string | null; commit: string | null } }> {
  const manifestBytes = await from.snapshotManifest(id);
  // The same check the receiving node makes, before anything moves: a manifest that names a
  // path outside a workspace (or an invalid commit to fetch) stops here.
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestBytes.toString('utf8'));
  } catch {
    throw new BerthError('corrupt', `snapshot ${id.slice(0, 19)} is not a valid manifest`);
  }
  const manifest = validateManifest(parsed, id.slice(0, 19));
  const hashes = [id.slice('sha256:'.length), ...new Set(manifest.entries.map((e) => e.blob).filter((b): b is string => !!b))];
  const missing = await to.missingBlobs(hashes);
  // A few blobs in flight at once: on a link with latency, one at a time is a round trip each.
  let moved = 0;
  let done = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < missing.length) {
      const h = missing[next++]!;
      const data = h === id.slice(7) ? manifestBytes : await from.getBlob(h);
      await to.putBlob(h, data);
      moved += data.length;
      done++;
      show(`snapshot ${done}/${missing.length} blobs, ${(moved / 1e6).toFixed(2)} MB`, done / missing.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(6, missing.length) }, worker));
  const info = await to.importSnapshot({
    id,
    repo: meta.repo,
    toolchain: meta.toolchain,
    cacheKeys: meta.cacheKeys,
    env: meta.env,
    reason: meta.reason,
  });
  return { ...info, transferred: { blobs: missing.length, bytes: moved }, head: manifest.head };
}

export async function cmdEnter(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['attach', 'no-shell', 'json'], value: ['as', 'registry'] });
  const what = p.positionals[0];
  if (!what) throw new BerthError('usage', 'usage: berth enter NODE/ENV [--attach] [--no-shell] [--as NAME]');
  if (bool(p, 'attach')) return cmdShell([what, ...(p.rest.length ? ['--', ...p.rest] : [])]);
  const t = await target(what);
  if (!t.node) throw new BerthError('usage', `${what} is already on this node`, `use \`berth shell ${what}\``);
  const t0 = performance.now();
  const remote = t.client;
  const entry = loadNodes()[t.node]!;
  const bar = new Progress('enter', bool(p, 'json'));
  const local = await connectLocal({ autostart: true });
  const localName = flag(p, 'as') ?? t.env;
  let created = false;
  let pulling: Promise<unknown> | null = null;
  let pullInFlight = false;
  let engine: Engine | undefined;
  // Caches fetched early, by kind (step 3); their files go when enter ends, whatever happens.
  const staged = new Map<string, { dir: string; path: string; done: Promise<void> }>();
  const cancelStaging = new AbortController();
  try {
    // 1. The identity, with the agent's work pinned in a fresh snapshot.
    bar.update(`snapshot of ${what}`);
    trace('enter: start');
    const info = await remote.getEnv(t.env);
    trace('enter: remote environment described');
    // 2. The toolchain, by digest, from the registry when this node lacks it. The pull runs
    //    beside steps 1, 4 and 5: they wait on the link, it mostly on this machine's disk.
    //    (The steps are numbered as in docs/nodes.md.)
    engine = (await discoverEngine({})).engine;
    const haveImage = await engine.inspectImage(info.toolchain);
    // 3. Caches this node has no volume for at all start arriving now too, into a file here, and
    //    go into the local environment once it exists; the others are checked and copied then.
    for (const [kind, key] of Object.entries(info.cacheKeys)) {
      const dir = cacheTarget(kind);
      if (!dir) continue;
      const have = await engine.listVolumes({ 'org.berth.cache': kind });
      if (have.includes(cacheVolumeName(kind, key))) continue;
      const stageDir = join(cacheDir(), 'staging');
      mkdirSync(stageDir, { recursive: true });
      const path = join(stageDir, `${process.pid}-${kind}.tar`);
      const done = cacheToFile(remote, t.env, dir, path, cancelStaging.signal);
      done.catch(() => {});
      staged.set(kind, { dir, path, done });
    }
    trace(`enter: toolchain ${haveImage ? 'here' : 'missing'}, ${staged.size} cache(s) fetching early`);
    let pulled = '';
    const show = (m: string, f?: number): void => bar.update(pulled ? `${m} · toolchain ${pulled}` : m, f);
    if (!haveImage) {
      const registry = flag(p, 'registry') ?? entry.registry ?? registryFromEnv();
      if (!registry)
        throw new BerthError(
          'image_missing',
          `toolchain ${info.toolchain.slice(0, 19)} is not on this node and no registry is known`,
          'give --registry, or set BERTH_REGISTRY',
        );
      pulled = 'pull starting';
      const pullPhases = new Set<string>();
      pulling = transferToolchain('pull', info.toolchain, registry, {
        engine,
        onProgress: (m, f) => {
          const phase = m.split(' ')[0]!;
          if (!pullPhases.has(phase)) trace(`enter: toolchain ${phase} started`);
          pullPhases.add(phase);
          pulled = f === undefined ? m : `${m} ${Math.round(f * 100)}%`;
        },
      }).finally(() => {
        pulled = '';
        pullInFlight = false;
      });
      pullInFlight = true;
      // Awaited below; an earlier failure ends the command, and a retry finds the layers kept.
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
      show,
    );
    trace(`enter: ${moved.transferred.blobs} blob(s) moved`);
    // 5. The commits (the base, and the agent's own), with git's own transport through berth.
    show('commits');
    const head = moved.head.commit && moved.head.commit !== info.commit ? moved.head.commit : null;
    await local.request('POST', '/v1/repos/fetch', {
      repo: info.repo,
      commits: head ? [info.commit, head] : [info.commit],
      remote: { url: entry.url, token: remote.token, env: t.env, ...(entry.ca ? { ca: readFileSync(entry.ca, 'utf8') } : {}) },
    });
    trace('enter: commits fetched');
    if (pulling) {
      const tick = setInterval(() => show('waiting for the toolchain'), 200);
      try {
        await pulling;
      } finally {
        clearInterval(tick);
      }
      trace('enter: toolchain in the engine');
    }
    // 6. A local environment from the identity.
    show('starting the local environment');
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
    for (const [kind] of Object.entries(info.cacheKeys)) {
      const dir = cacheTarget(kind);
      if (!dir) continue;
      const early = staged.get(kind);
      if (early) {
        show(`cache ${kind}`);
        await early.done;
        await fileToCache(early.path, local, localName, early.dir);
        continue;
      }
      const probe = await local.exec(localName, { argv: ['sh', '-c', `ls -A ${dir} 2>/dev/null | head -c 1`] });
      if (Buffer.from(probe.stdout, 'base64').length > 0) continue;
      show(`cache ${kind}`);
      await pipeCache(remote, t.env, local, localName, dir);
    }
    trace('enter: caches in place');
    const ms = Math.round(performance.now() - t0);
    bar.done(`${localName} is here (${ms} ms); \`berth push ${localName}\` sends your changes back`);
    if (bool(p, 'json')) printJson({ ...env, enterMs: ms, transferred: moved.transferred, toolchainPulled: !haveImage });
    if (bool(p, 'no-shell') || bool(p, 'json')) return 0;
    return await cmdShell([localName]);
  } catch (err) {
    if (created) await local.removeEnv(localName, { discard: true }).catch(() => {});
    if (pulling && pullInFlight && !(err instanceof BerthError && err.code === 'interrupted')) {
      // The toolchain is worth keeping: a retry then starts with it here.
      process.stderr.write(
        `enter failed (${err instanceof Error ? err.message : String(err)}); finishing the toolchain pull for the retry (Ctrl-C stops it)\n`,
      );
      await pulling.catch(() => {});
    }
    throw err;
  } finally {
    // The engine connection goes once a pull still going (an interrupted enter) has ended.
    const e = engine;
    void (pulling ?? Promise.resolve()).catch(() => {}).finally(() => e?.close());
    cancelStaging.abort();
    for (const { path: f } of staged.values()) {
      rmSync(f, { force: true });
      rmSync(f + '.partial', { force: true });
    }
    remote.close();
    local.close();
  }
}

/** A cache directory of a remote environment, into a tar file here, read no faster than it is written. */
async function cacheToFile(from: NodeClient, fromEnv: string, dir: string, path: string, signal: AbortSignal): Promise<void> {
  const file = createWriteStream(path + '.partial');
  const fileDone = new Promise<void>((resolve, reject) => {
    file.on('close', resolve);
    file.on('error', reject);
  });
  fileDone.catch(() => {});
  let paused = false;
  const holder: { reader?: ReturnType<NodeClient['execStream']> } = {};
  holder.reader = from.execStream(
    fromEnv,
    { argv: ['tar', '-C', dir, '-cf', '-', '.'] },
    {
      stdout: (c) => {
        if (file.write(c) || paused) return;
        paused = true;
        holder.reader?.pauseOutput();
        file.once('drain', () => {
          paused = false;
          holder.reader?.resumeOutput();
        });
      },
      stderr: () => {},
    },
  );
  // Stopped (the tar on the far side killed) when enter ends first.
  const stop = (): void => holder.reader?.kill('SIGKILL');
  signal.addEventListener('abort', stop, { once: true });
  try {
    const out = await holder.reader.wait();
    file.end();
    await fileDone;
    if (out.exitCode !== 0) throw new BerthError('internal', `reading the cache ${dir} failed (tar exited ${out.exitCode})`);
    renameSync(path + '.partial', path);
  } catch (err) {
    file.destroy();
    rmSync(path + '.partial', { force: true });
    throw err;
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** A tar file into a directory of a local environment, unpacked by the engine (no exec, no extra hop). */
async function fileToCache(path: string, to: NodeClient, toEnv: string, dir: string): Promise<void> {
  await to.putArchive(toEnv, dir, createReadStream(path, { highWaterMark: 1 << 20 }), statSync(path).size);
}

/** A cache directory from one environment into another, as a tar stream between two execs. */
async function pipeCache(from: NodeClient, fromEnv: string, to: NodeClient, toEnv: string, dir: string): Promise<void> {
  const writer = to.execStream(
    toEnv,
    { argv: ['tar', '-C', dir, '-xf', '-'], interactiveStdin: true },
    { stdout: () => {}, stderr: () => {} },
  );
  const holder: { reader?: ReturnType<NodeClient['execStream']> } = {};
  holder.reader = from.execStream(
    fromEnv,
    { argv: ['tar', '-C', dir, '-cf', '-', '.'] },
    {
      // Read no faster than the other side writes.
      stdout: (c) => writer.feed(c, { pause: () => holder.reader?.pauseOutput(), resume: () => holder.reader?.resumeOutput() }),
      stderr: () => {},
    },
  );
  // Both ends are awaited together: a failure on either side is the error, never an orphan.
  const writing = writer.wait();
  writing.catch(() => {});
  const reading = holder.reader.wait().finally(() => writer.endStdin());
  const [out, into] = await Promise.all([reading, writing]);
  if (out.exitCode !== 0 || into.exitCode !== 0)
    throw new BerthError('internal', `copying the cache ${dir} failed (tar exited ${out.exitCode} and ${into.exitCode})`);
}

export async function cmdPush(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const name = p.positionals[0];
  if (!name) throw new BerthError('usage', 'usage: berth push NAME');
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
    const bar = new Progress('push', bool(p, 'json'));
    try {
      const mine = await local.snap(name, { artifacts: [] });
      await moveSnapshot(
        local,
        remote,
        mine.id,
        { repo: env.repo, toolchain: env.toolchain, cacheKeys: env.cacheKeys, env: up.env, reason: 'pushed' },
        (m, f) => bar.update(m, f),
      );
      let r;
      try {
        r = await remote.apply(up.env, { snapshot: mine.id, since: up.snapshot });
      } catch (err) {
        if (err instanceof BerthError && err.code === 'conflict') {
          const files = /in (.+)$/.exec(err.message)?.[1]?.split(', ') ?? [];
          for (const f of files) process.stderr.write(`CONFLICT (content): Merge conflict in ${f}\n`);
          throw new BerthError(
            'conflict',
            `push failed: the agent changed ${files.length} of the same file(s); nothing was overwritten`,
            `see its changes with \`berth exec ${up.node}/${up.env} -- git diff\`, then enter again`,
          );
        }
        throw err;
      }
      await local.request('PATCH', `/v1/envs/${encodeURIComponent(name)}`, { upstream: { ...up, snapshot: mine.id } });
      const ms = Math.round(performance.now() - t0);
      bar.done(`${r.files.length} file(s) applied to ${up.node}/${up.env} (${ms} ms)`);
      if (bool(p, 'json')) printJson({ ...r, pushMs: ms });
      return 0;
    } finally {
      remote.close();
    }
  } finally {
    local.close();
  }
}

export async function cmdForward(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['local'] });
  const [what, portText] = p.positionals;
  const port = Number(portText);
  if (!what || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new BerthError('usage', 'usage: berth forward [NODE/]ENV PORT [--local PORT]');
  const t = await target(what);
  await t.client.getEnv(t.env);
  const localPort = Number(flag(p, 'local') ?? port);
  const server = createServer((sock) => {
    sock.pause();
    const ws = t.client.connect(t.env, port);
    ws.on('message', (d, bin) => {
      if (bin) sock.write(d as Buffer);
      else sock.resume();
    });
    ws.on('close', () => sock.end());
    ws.on('error', () => sock.destroy());
    sock.on('data', (c: Buffer) => ws.readyState === ws.OPEN && ws.send(c));
    sock.on('close', () => ws.close());
    sock.on('error', () => ws.close());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new BerthError('already_exists', `local port ${localPort} is in use`, 'pick another with --local PORT')
          : err,
      ),
    );
    server.listen(localPort, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : localPort;
  if (bool(p, 'json')) printJson({ env: what, port, local: `127.0.0.1:${bound}` });
  else process.stderr.write(`berth: ${what} port ${port} is on 127.0.0.1:${bound}; Ctrl-C stops\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  server.close();
  t.client.close();
  return 0;
}

/**
 * The other half of `git fetch ext::…`: git's protocol over stdio, upload-pack in the
 * environment. It talks only to a berth node over http(s), and ends with the git that runs it.
 */
export async function cmdGitUploadPack(argv: string[]): Promise<number> {
  const service = argv[0];
  if (service !== 'git-upload-pack') throw new BerthError('usage', 'only git-upload-pack is served');
  const url = process.env.BERTH_UPLOAD_URL;
  const env = process.env.BERTH_UPLOAD_ENV;
  if (!url || !env) throw new BerthError('usage', 'BERTH_UPLOAD_URL and BERTH_UPLOAD_ENV are required');
  if (!/^https?:\/\/[^/\s@]+\/?$/.test(url)) throw new BerthError('usage', 'BERTH_UPLOAD_URL must be http(s)://HOST:PORT');
  const { NodeClient: Client } = await import('../../client/client.js');
  const client = new Client({ url, token: process.env.BERTH_UPLOAD_TOKEN || undefined, ca: process.env.BERTH_UPLOAD_CA || undefined });
  const handle = client.execStream(
    env,
    { argv: ['git', '-c', 'uploadpack.allowAnySHA1InWant=true', 'upload-pack', '--strict', '/workspace/.git'], interactiveStdin: true },
    { stdout: (c) => process.stdout.write(c), stderr: (c) => process.stderr.write(c) },
  );
  process.stdin.on('data', (c: Buffer) => handle.writeStdin(c));
  process.stdin.on('end', () => handle.endStdin());
  // The git that started this is gone (killed, say): so is the reason to run.
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    handle.kill('SIGKILL');
    process.exit(1);
  }, 500);
  try {
    const r = await handle.wait();
    return r.exitCode;
  } finally {
    clearInterval(watch);
    client.close();
    process.stdin.destroy();
  }
}
