import { BerthError } from '../../core/errors.js';
import { discoverEngine } from '../../engine/discovery.js';
import { buildBaseImage, type BuildResult } from '../../toolchain/base-image.js';
import { bool, parseArgs } from '../args.js';
import { printJson } from '../output.js';
import { Progress } from '../progress.js';

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

export async function cmdToolchain(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'build') throw new BerthError('usage', 'usage: berth toolchain build [--force] [--json]');
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
