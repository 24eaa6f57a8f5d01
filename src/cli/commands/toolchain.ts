// `berth toolchain build|push|pull`: the node builds and moves toolchains (src/sdk/toolchain.ts);
// this draws its progress.
import { BerthError } from '../../core/errors.js';
import { connectLocal } from '../../sdk/connect.js';
import { buildToolchain, pullToolchain, pushToolchain, registryFromEnv, type BuiltToolchain } from '../../sdk/toolchain.js';
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
