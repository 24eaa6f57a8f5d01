// Building a devcontainer.json's toolchain into the node's engine: its image, or its Dockerfile
// with the engine's layer cache, step by step, each step explained (hit or miss, and why).
// A failing step reports its output; the engine removes its container and berth tags nothing.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { baseImages, copySources, parseDockerfile, stepKeys, whyMissed, type StepKey } from '../../core/dockerfile.js';
import { BerthError } from '../../core/errors.js';
import type { BuiltDevcontainer, BuildStep, ProgressReport } from '../../core/toolchain-api.js';
import type { Engine } from '../../engine/engine.js';
import { cacheDir } from '../base-image.js';
import { lineOfField, type LoadedDevcontainer } from './load.js';

/** The registry an image reference names (Docker Hub when it names none). */
export function registryOf(image: string): string {
  const first = image.split('/')[0]!;
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return first;
  return 'docker.io';
}

/** Whether the node reaches a registry's host at all (a TCP connection within 3 s). */
async function reachable(registry: string, signal?: AbortSignal): Promise<boolean> {
  const m = /^(.*?)(?::(\d+))?$/.exec(registry)!;
  const host = registry === 'docker.io' ? 'registry-1.docker.io' : m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2] ?? 443);
  return new Promise((resolve) => {
    const s = connect({ host, port, signal });
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), 3000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function unreachable(image: string, what: string): BerthError {
  const registry = registryOf(image);
  return new BerthError(
    'registry_unreachable',
    `${what} ${image}: registry ${registry} is not reachable from this node`,
    `put the image on a registry this node reaches (or build it here) and name it there, e.g. "image": "HOST:PORT/${image.split('/').pop()}"`,
  );
}

/** Makes sure the engine holds an image, pulling it only from a registry the node reaches. */
async function ensureImage(engine: Engine, image: string, what: string, signal?: AbortSignal): Promise<string> {
  const have = await engine.inspectImage(image, signal);
  if (have) return have.id;
  if (!(await reachable(registryOf(image), signal))) throw unreachable(image, what);
  const pulled = await engine.pullFromRegistry(image, { tlsVerify: !registryOf(image).startsWith('localhost') }, signal).catch(() => false);
  const after = pulled ? await engine.inspectImage(image, signal) : null;
  if (!after)
    throw new BerthError(
      'image_missing',
      `${what} ${image} is not on this node and the engine could not pull it`,
      'pull it into the engine first',
    );
  return after.id;
}

/** A hash of what a COPY/ADD reads from the context: paths, sizes and contents. */
function hashSources(context: string, sources: string[]): string {
  if (sources.length === 0) return '';
  const h = createHash('sha256');
  const walk = (p: string, rel: string): void => {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const n of readdirSync(p).sort()) walk(path.join(p, n), `${rel}/${n}`);
    } else if (st.isFile()) {
      h.update(`${rel}\0${st.mode & 0o777}\0`);
      h.update(readFileSync(p));
    }
  };
  for (const s of sources) {
    if (/[*?[]/.test(s)) walk(context, '.');
    else walk(path.resolve(context, s), s);
  }
  return h.digest('hex');
}

function contextTar(context: string): Readable {
  const p = spawn('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', '-', '-C', context, '.'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return p.stdout;
}

interface Record_ {
  steps: StepKey[];
}

function recordPath(file: string): string {
  const d = path.join(cacheDir(), 'devcontainer');
  mkdirSync(d, { recursive: true });
  return path.join(d, `${createHash('sha256').update(file).digest('hex').slice(0, 32)}.json`);
}

export interface BuildDevcontainerOptions {
  onProgress?: (p: ProgressReport) => void;
  signal?: AbortSignal;
}

/** Builds (or finds) the toolchain a devcontainer.json describes. */
export async function buildDevcontainer(
  engine: Engine,
  dc: LoadedDevcontainer,
  opts: BuildDevcontainerOptions = {},
): Promise<BuiltDevcontainer> {
  const started = Date.now();
  const { config } = dc;
  const report = opts.onProgress ?? ((): void => {});
  const tag = `berth-devcontainer:${createHash('sha256').update(dc.file).digest('hex').slice(0, 16)}`;
  const base = {
    warnings: config.warnings,
    ...(config.image ? { image: config.image } : {}),
    ...(config.build ? { build: config.build } : {}),
  };
  if (!config.build) {
    report({ message: `image ${config.image!}` });
    const digest = await ensureImage(engine, config.image!, 'image', opts.signal);
    return { digest, tag: config.image!, cached: true, steps: [], seconds: (Date.now() - started) / 1000, ...base };
  }

  const b = config.build;
  const context = path.resolve(dc.dir, b.context);
  if (!existsSync(context) || !statSync(context).isDirectory())
    throw new BerthError(
      'invalid_devcontainer',
      `${dc.shown}:${lineOfField(dc, ['build', 'context'])}: the build context ${b.context} (${context}) does not exist`,
      'point build.context at a folder, relative to devcontainer.json',
    );
  const dockerfile = path.resolve(dc.dir, b.dockerfile);
  if (!existsSync(dockerfile))
    throw new BerthError(
      'invalid_devcontainer',
      `${dc.shown}:${lineOfField(dc, ['build', 'dockerfile'])}: no Dockerfile at ${b.dockerfile}`,
    );
  const inContext = path.relative(context, dockerfile);
  if (inContext.startsWith('..'))
    throw new BerthError(
      'invalid_devcontainer',
      `${dc.shown}:${lineOfField(dc, ['build', 'dockerfile'])}: the Dockerfile ${b.dockerfile} is outside the build context ${b.context}`,
      'move it into the context, or widen build.context',
    );
  const steps = parseDockerfile(readFileSync(dockerfile, 'utf8'));
  for (const image of baseImages(steps, b.args))
    await ensureImage(engine, image, `${path.relative(dc.dir, dockerfile)}: FROM`, opts.signal);

  const keys = stepKeys(steps, b.args, (s) => hashSources(context, copySources(s)));
  const recFile = recordPath(dc.file);
  const before = existsSync(recFile) ? (JSON.parse(readFileSync(recFile, 'utf8')) as Record_).steps : undefined;

  // Engine output → steps: "Step N/M : TEXT" (Docker) or "STEP N/M: TEXT" (Podman), then a
  // "Using cache" line when the step was a hit.
  const seen: { index: number; hit: boolean }[] = [];
  const output: string[] = [];
  let next = 0;
  const onLine = (l: string): void => {
    output.push(l);
    if (output.length > 40) output.shift();
    const m = /^(?:\[\d+\/\d+\] )?(?:Step|STEP) (\d+)\/(\d+) ?: ?(.*)$/.exec(l.trim());
    if (m) {
      const keyword = (m[3] ?? '').split(/\s+/)[0]!.toUpperCase();
      let i = next;
      while (i < steps.length && steps[i]!.keyword !== keyword) i++;
      if (i < steps.length) {
        seen.push({ index: i, hit: false });
        next = i + 1;
        report({ message: `step ${i + 1}/${steps.length}: ${steps[i]!.text.slice(0, 60)}`, fraction: (i + 1) / steps.length });
      }
      return;
    }
    if (/^\s*-+> Using cache/.test(l) && seen.length) seen[seen.length - 1]!.hit = true;
  };
  let digest: string;
  try {
    digest = await engine.buildImage(
      contextTar(context),
      { dockerfile: inContext, tag, args: b.args, ...(b.target ? { target: b.target } : {}), labels: { 'berth.devcontainer': dc.file } },
      onLine,
      opts.signal,
    );
  } catch (e) {
    if (!(e instanceof BerthError) || e.code !== 'build_failed') throw e;
    const failed = seen[seen.length - 1];
    const at = failed ? steps[failed.index]! : undefined;
    const where = at ? `${path.relative(dc.dir, dockerfile)}:${at.line}: ${at.text.slice(0, 80)}` : path.relative(dc.dir, dockerfile);
    const tail = output
      .filter((l) => !/^(?:\[\d+\/\d+\] )?(?:Step|STEP) /.test(l.trim()))
      .slice(-5)
      .join(' | ');
    throw new BerthError('build_failed', `${where}: ${e.message}${tail ? ` (output: ${tail})` : ''}`, 'fix the step; nothing was tagged');
  }
  writeFileSync(recFile, JSON.stringify({ file: dc.file, steps: keys }, null, 1));

  let missedAbove: number | undefined;
  const explained: BuildStep[] = steps.map((s, i) => {
    const got = seen.find((x) => x.index === i);
    if (s.keyword === 'FROM') return { line: s.line, text: s.text, cache: 'base', why: 'the base image' };
    if (!got) return { line: s.line, text: s.text, cache: 'hit', why: 'not built: outside the target stage, or folded by the engine' };
    if (got.hit)
      return { line: s.line, text: s.text, cache: 'hit', why: before ? 'unchanged since the last build' : "in the engine's cache" };
    const why = whyMissed(i, keys, before, missedAbove);
    missedAbove ??= s.line;
    return { line: s.line, text: s.text, cache: 'miss', why };
  });
  const cached = explained.every((s) => s.cache !== 'miss');
  return { digest, tag, cached, steps: explained, seconds: (Date.now() - started) / 1000, ...base };
}
