// `berth toolchain build|push|pull`: the node builds and moves toolchains (src/sdk/toolchain.ts);
// this draws its progress.
import { BerthError } from '../../core/errors.js';
import { connectLocal } from '../../sdk/connect.js';
import { resolve } from 'node:path';
import {
  buildDevcontainer,
  buildToolchain,
  pullToolchain,
  pushToolchain,
  registryFromEnv,
  type BuiltToolchain,
} from '../../sdk/toolchain.js';
import type { NodeClient } from '../../client/client.js';
import { bool, flag, parseArgs } from '../args.js';
import { printJson } from '../output.js';
import { Progress } from '../progress.js';

/** Builds the default toolchain on `node` (or the local node), with a progress bar. */
export async function ensureToolchain(opts: { force?: boolean; quiet?: boolean; node?: NodeClient } = {}): Promise<BuiltToolchain> {
  const node = opts.node ?? (await connectLocal({ autostart: true }));
  const bar = new Progress('toolchain', opts.quiet);
  try {
    const r = await buildToolchain(node, { force: opts.force, onProgress: (p) => bar.update(p.message, p.fraction) });
    bar.done(`${r.digest} (${r.cached === 'image' ? 'cached' : r.cached === 'archive' ? 'loaded from cache' : 'built'})`);
    return r;
  } finally {
    if (!opts.node) node.close();
  }
}

export async function cmdToolchain(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'push' || sub === 'pull') {
    const p = parseArgs(rest, { boolean: ['json'], value: ['registry', 'via'] });
    const via = flag(p, 'via') ?? 'auto';
    if (via !== 'auto' && via !== 'engine' && via !== 'berth')
      throw new BerthError('usage', `--via must be engine, berth or auto, not ${via}`);
    const registry = flag(p, 'registry') ?? registryFromEnv();
    if (!registry) throw new BerthError('usage', `berth toolchain ${sub} needs --registry HOST:PORT (or BERTH_REGISTRY)`);
    const digest = p.positionals[0];
    if (sub === 'pull' ? !digest : false) throw new BerthError('usage', 'usage: berth toolchain pull DIGEST --registry HOST:PORT');
    if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest))
      throw new BerthError('usage', `usage: berth toolchain ${sub} [DIGEST] --registry HOST:PORT`);
    const node = await connectLocal({ autostart: true });
    const bar = new Progress(`toolchain ${sub}`, bool(p, 'json'));
    const onProgress = ({ message, fraction }: { message: string; fraction?: number }): void => bar.update(message, fraction);
    try {
      if (sub === 'push') {
        const r = await pushToolchain(node, registry, { digest, onProgress });
        bar.done(`${r.digest.slice(0, 19)} in ${registry}: ${(r.bytes / 1e6).toFixed(1)} MB sent, ${r.reused} layer(s) already there`);
        if (bool(p, 'json')) printJson(r);
      } else {
        const r = await pullToolchain(node, digest!, registry, { via, onProgress });
        bar.done(
          `${r.digest.slice(0, 19)}: ${(r.bytes / 1e6).toFixed(1)} MB ${r.via === 'engine' ? 'pulled by the engine' : 'received'}, ${r.reused} layer(s) already here`,
        );
        if (bool(p, 'json')) printJson(r);
      }
    } finally {
      node.close();
    }
    return 0;
  }
  if (sub !== 'build')
    throw new BerthError(
      'usage',
      'usage: berth toolchain build [--force] | push [DIGEST] --registry R | pull DIGEST --registry R [--via engine|berth]',
    );
  const p = parseArgs(rest, { boolean: ['json', 'force', 'explain'], value: ['devcontainer', 'file', 'workspace-folder'] });
  if (p.flags.has('file')) {
    throw new BerthError(
      'usage',
      'building from a Containerfile is not available yet',
      'name it in a devcontainer.json and use --devcontainer',
    );
  }
  const dcPath = flag(p, 'devcontainer');
  if (dcPath !== undefined) return buildFromDevcontainer(dcPath, flag(p, 'workspace-folder'), bool(p, 'explain'), bool(p, 'json'));
  const r = await ensureToolchain({ force: bool(p, 'force') });
  if (bool(p, 'json')) printJson(r);
  else process.stdout.write(r.digest + '\n');
  return 0;
}

/** `berth toolchain build --devcontainer PATH [--explain]`: the node builds it; warnings and the explanation go to stderr. */
async function buildFromDevcontainer(p: string, workspaceFolder: string | undefined, explain: boolean, json: boolean): Promise<number> {
  const node = await connectLocal({ autostart: true });
  const bar = new Progress('devcontainer', json);
  try {
    const r = await buildDevcontainer(node, resolve(p), {
      shownAs: p,
      ...(workspaceFolder ? { workspaceFolder: resolve(workspaceFolder) } : {}),
      onProgress: (x) => bar.update(x.message, x.fraction),
    });
    const misses = r.steps.filter((s) => s.cache === 'miss').length;
    bar.done(`${r.digest} (${r.steps.length ? `${r.steps.length - misses} cached, ${misses} rebuilt` : r.tag})`);
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
    if (explain)
      for (const s of r.steps)
        process.stderr.write(`${s.cache.padEnd(4)}  line ${String(s.line).padEnd(4)} ${s.text.slice(0, 60)}  (${s.why})\n`);
    if (json) printJson(r);
    else process.stdout.write(r.digest + '\n');
    return 0;
  } finally {
    node.close();
  }
}
