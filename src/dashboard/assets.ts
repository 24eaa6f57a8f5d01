// The page's files: its own (src/dashboard/web, copied into dist by the build) and xterm.js
// from the installed package. All read once, served from memory; nothing is fetched at run time.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export interface Asset {
  type: string;
  body: Buffer;
}

function webDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), 'web');
}

/** Path on the dashboard -> file, for every file the page needs. */
function files(): Record<string, string> {
  const req = createRequire(import.meta.url);
  const xterm = dirname(req.resolve('@xterm/xterm/package.json'));
  const fit = dirname(req.resolve('@xterm/addon-fit/package.json'));
  const web = webDir();
  return {
    '/': join(web, 'index.html'),
    '/login': join(web, 'login.html'),
    '/static/app.js': join(web, 'app.js'),
    '/static/cards.js': join(web, 'cards.js'),
    '/static/panels.js': join(web, 'panels.js'),
    '/static/login.js': join(web, 'login.js'),
    '/static/style.css': join(web, 'style.css'),
    '/vendor/xterm.mjs': join(xterm, 'lib', 'xterm.mjs'),
    '/vendor/xterm.css': join(xterm, 'css', 'xterm.css'),
    '/vendor/addon-fit.mjs': join(fit, 'lib', 'addon-fit.mjs'),
  };
}

export function loadAssets(): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const [path, file] of Object.entries(files())) {
    const ext = /\.[a-z]+$/.exec(file)?.[0] ?? '';
    // xterm's ESM build names its source map; the map is not served, so the reference goes.
    const body = readFileSync(file);
    out.set(path, {
      type: TYPES[ext] ?? 'application/octet-stream',
      body: ext === '.mjs' ? Buffer.from(body.toString('utf8').replace(/\n\/\/# sourceMappingURL=.*$/m, '')) : body,
    });
  }
  return out;
}
