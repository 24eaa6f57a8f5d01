import { BerthError } from '../../core/errors.js';
import { discoverEngine } from '../../engine/discovery.js';
import type { Engine } from '../../engine/engine.js';
import { buildBaseImage, defaultToolchainDigest, setDefaultToolchain, type BuildResult } from '../../toolchain/base-image.js';
import { pullImage, pushImage, registryFromEnv, type PullVia, type TransferProgress } from '../../remote/registry.js';
import { bool, flag, parseArgs } from '../args.js';
import { printJson } from '../output.js';
import { Progress, trace } from '../progress.js';

export async function ensureToolchain(opts: { force?: boolean; quiet?: boolean } = {}): Promise<BuildResult> {
  const { engine } = await discoverEngine({ log: (l) => process.stderr.write(l + '\n') });
  const bar = new Progress('toolchain', opts.quiet);
  try {
    const r = await buildBaseImage(engine, {
      force: opts.force,
      onProgress: (p) => (p.phase === 'done' ? undefined : bar.update(p.message, p.fraction)),
    });
    bar.done(`${r.digest} (${r.cached === 'image' ? 'cached' : r.cached === 'archive' ? 'loaded from cache' : 'built'})`);
    return r;
  } finally {
    engine.close();
  }
}

/**
 * Moves a toolchain through a registry, with a progress bar of its own, or reporting to
 * `onProgress` when the caller draws one (enter shows it beside its other work).
 */
export async function transferToolchain(
  what: 'push' | 'pull',
  digest: string,
  registry: string,
  opts: { quiet?: boolean; onProgress?: (message: string, fraction?: number) => void; engine?: Engine; via?: PullVia } = {},
): Promise<{ bytes: number; reused: number; via?: 'engine' | 'berth' | null }> {
  const engine = opts.engine ?? (await discoverEngine({ log: (l) => process.stderr.write(l + '\n') })).engine;
  trace(`toolchain ${what}: engine found`);
  const bar = opts.onProgress ? null : new Progress(`toolchain ${what}`, opts.quiet);
  const update = opts.onProgress ?? ((m: string, f?: number) => bar?.update(m, f));
  try {
    const progress = (p: TransferProgress): void =>
      update(
        p.message ?? `${p.phase} ${(p.bytes / 1e6).toFixed(1)} MB`,
        p.fraction ?? (p.total ? Math.min(1, p.bytes / p.total) : undefined),
      );
    if (what === 'push') {
      const r = await pushImage(engine, digest, registry, progress);
      bar?.done(`${digest.slice(0, 19)} in ${registry}: ${(r.uploaded / 1e6).toFixed(1)} MB sent, ${r.skipped} layer(s) already there`);
      return { bytes: r.uploaded, reused: r.skipped };
    }
    const r = await pullImage(engine, digest, registry, progress, opts.via);
    // A node's first toolchain becomes its default.
    if (!defaultToolchainDigest()) setDefaultToolchain(digest);
    bar?.done(
      `${digest.slice(0, 19)}: ${(r.downloaded / 1e6).toFixed(1)} MB ${r.via === 'engine' ? 'pulled by the engine' : 'received'}, ${r.reused} layer(s) already here`,
    );
    return { bytes: r.downloaded, reused: r.reused, via: r.via };
  } finally {
    if (!opts.engine) engine.close();
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
    const digest = p.positionals[0] ?? (sub === 'push' ? defaultToolchainDigest() : undefined);
    if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest))
      throw new BerthError('usage', `usage: berth toolchain ${sub} [DIGEST] --registry HOST:PORT`);
    const r = await transferToolchain(sub, digest, registry, { quiet: bool(p, 'json'), via });
    if (bool(p, 'json')) printJson({ digest, registry, ...r });
    return 0;
  }
  if (sub !== 'build')
    throw new BerthError(
      'usage',
      'usage: berth toolchain build [--force] | push [DIGEST] --registry R | pull DIGEST --registry R [--via engine|berth]',
    );
  const p = parseArgs(rest, { boolean: ['json', 'force'], value: ['devcontainer', 'file'] });
  if (p.flags.has('devcontainer') || p.flags.has('file')) {
    throw new BerthError(
      'usage',
      'building from devcontainer.json or a Containerfile is not available yet',
      'run `berth toolchain build` for the default Debian toolchain',
    );
  }
  const r = await ensureToolchain({ force: bool(p, 'force') });
  if (bool(p, 'json')) printJson(r);
  else process.stdout.write(r.digest + '\n');
  return 0;
}
