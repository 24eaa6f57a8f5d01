// `berth dashboard [--open] [--json]`: a one-time login link to the node's dashboard. Only the
// node's own token gets one (on the unix socket, the node's owner); an agent's token is refused.
import { spawn, spawnSync } from 'node:child_process';
import { BerthError } from '../../core/errors.js';
import { Berth } from '../../sdk/berth.js';
import { bool, parseArgs } from '../args.js';
import { printJson } from '../output.js';

/** A browser to open the link with: the desktop's choice, else Chromium. */
function browser(): string | undefined {
  for (const b of ['xdg-open', 'chromium', 'chromium-browser', 'google-chrome']) {
    if (spawnSync('sh', ['-c', `command -v ${b}`], { stdio: 'ignore' }).status === 0) return b;
  }
  return undefined;
}

export async function cmdDashboard(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['open', 'json'], value: [] });
  if (p.positionals.length) throw new BerthError('usage', 'usage: berth dashboard [--open] [--json]');
  const berth = await Berth.connect(
    process.env.BERTH_URL ? { url: process.env.BERTH_URL, token: process.env.BERTH_TOKEN } : { token: process.env.BERTH_TOKEN },
  );
  try {
    const r = await berth.client.request<{ url: string; expiresAt: string }>('POST', '/dashboard/login');
    if (bool(p, 'json')) printJson({ url: r.url, expiresAt: r.expiresAt });
    else process.stdout.write(`${r.url}\n`);
    if (bool(p, 'open')) {
      const b = browser();
      if (!b) throw new BerthError('usage', 'no browser found to open the link with', 'open the URL above yourself');
      spawn(b, [r.url], { detached: true, stdio: 'ignore' }).unref();
      process.stderr.write(`berth: opened the dashboard with ${b} (the link works once, for 10 minutes)\n`);
    }
  } finally {
    berth.close();
  }
  return 0;
}
