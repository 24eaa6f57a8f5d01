// The supervision dashboard in Debian's Chromium (playwright-core), against one node with many
// environments: the page's first render, a command's start reaching the page, and a keystroke's
// echo in the web terminal. Each beside its peer without the page: the same event reaching
// `berth.events()` in a program, and the same keystroke echoed on the dashboard's terminal
// WebSocket from a program (no browser) and on the node's PTY WebSocket.
//
// The environments are spread over `--nodes` nodes: this one and others it knows over TCP
// (`berth node add`), as a supervisor's page shows them.
//
//   node dist/bench/dashboard.js [--envs 50] [--nodes 3] [--n 30] [--engine podman] [--max-seconds 300]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { Berth } from '../src/sdk/index.js';
import {
  BerthNode,
  engineList,
  type EngineName,
  guarded,
  log,
  onCleanup,
  p50,
  parseOptions,
  prepareEngineBench,
  ratio,
  type Row,
  runBench,
  series,
  setDeadline,
} from './lib.js';

const opts = parseOptions({ envs: 50, nodes: 3, n: 30, engine: 'podman', 'max-seconds': 300 });
const results: Row[] = [];
const report: Record<string, unknown> = {
  benchmark: 'dashboard',
  targets: { 'first-render_p50_ms': 1000, 'command-start-to-page_p50_ms': 100, 'keystroke-echo_p50_ms': 30 },
};
const budget = (n = opts.n): { n: number; warmup: number; budgetMs: number } => ({ n, warmup: 3, budgetMs: 60_000 });
const now = (): number => performance.timeOrigin + performance.now();

// What the page-side functions below use of the browser (this program is compiled without the DOM's types).
interface Node0 {
  textContent: string | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<Node0> & { length: number };
  querySelector(selector: string): Node0 | null;
  addEventListener(type: string, fn: () => void, capture: boolean): void;
};
declare const window: Record<string, unknown>;
declare const MutationObserver: new (fn: () => void) => { observe(target: unknown, o: object): void };

/** Page-side probes, installed before any of the page's own scripts run. */
function probes(n: number): void {
  const w = window;
  const waiting = new Map<string, (t: number) => void>();
  let keyAt = 0;
  let sentAt = 0;
  let gotAt = 0;
  let echo: ((ms: number) => void) | null = null;
  // Where an echo's time goes: the key to the page's WebSocket send, the send to the echo's
  // arrival, and the arrival to xterm.js drawing it.
  const WS = w.WebSocket as new (...a: unknown[]) => { addEventListener(t: string, f: () => void): void; send(d: unknown): void };
  w.WebSocket = class extends WS {
    constructor(...a: unknown[]) {
      super(...a);
      this.addEventListener('message', () => {
        if (sentAt && !gotAt) gotAt = performance.now();
      });
    }
    override send(d: unknown): void {
      if (keyAt && !sentAt) sentAt = performance.now();
      super.send(d);
    }
  };
  w.__echoParts = [] as number[][];
  w.__waitRunning = (key: string) => new Promise<number>((r) => waiting.set(key, r));
  w.__nextEcho = () => {
    sentAt = 0;
    gotAt = 0;
    w.__rowsBefore = document.querySelector('.xterm-rows')?.textContent;
    return new Promise<number>((r) => (echo = r));
  };
  document.addEventListener('keydown', () => (keyAt = performance.now()), true);
  new MutationObserver(() => {
    const t = performance.timeOrigin + performance.now();
    if (w.__rendered === undefined && document.querySelectorAll('article[data-env]').length >= n) w.__rendered = performance.now();
    if (w.__hello === undefined && document.querySelector('body[data-ready]')) w.__hello = performance.now();
    for (const [key, resolve] of waiting) {
      for (const c of document.querySelectorAll('article[data-env] .running code')) {
        if (c.textContent?.includes(key)) {
          waiting.delete(key);
          resolve(t);
        }
      }
    }
    if (echo && keyAt && document.querySelector('.xterm-rows')) {
      // Any change to the terminal's rows after a key is its echo being drawn.
      const rows = document.querySelector('.xterm-rows')!;
      if (rows.textContent !== w.__rowsBefore) {
        w.__rowsBefore = rows.textContent;
        const done = echo;
        echo = null;
        const t = performance.now();
        if (sentAt && gotAt) (w.__echoParts as number[][]).push([sentAt - keyAt, gotAt - sentAt, t - gotAt]);
        done(t - keyAt);
      }
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
}

async function firstRender(page: Page, base: string): Promise<void> {
  const parts: { scripts: number[]; feed: number[] } = { scripts: [], feed: [] };
  const s = await series('dashboard-first-render', budget(10), async (measured) => {
    await page.goto(`${base}/`);
    await page.waitForFunction(() => window.__rendered !== undefined, null, { timeout: 30_000 });
    const t = await page.evaluate(() => ({
      rendered: window.__rendered as number,
      hello: window.__hello as number,
      dcl: (window.performance as { getEntriesByType(t: string): Array<{ domContentLoadedEventEnd: number }> }).getEntriesByType(
        'navigation',
      )[0]!.domContentLoadedEventEnd,
    }));
    if (measured) {
      parts.scripts.push(t.dcl);
      parts.feed.push(t.hello);
    }
    return t.rendered;
  });
  results.push(
    s.row({
      envs: opts.envs,
      nodes: opts.nodes,
      how: `navigation start to ${opts.envs} cards from ${opts.nodes} node(s) drawn (MutationObserver in the page)`,
      p50_scripts_loaded_ms: p50(parts.scripts),
      p50_feed_first_message_ms: p50(parts.feed),
    }),
  );
}

async function commandStart(page: Page, berth: Berth, node: BerthNode): Promise<void> {
  const env = await berth.get('bench-0');
  let i = 0;
  const page0 = await series('dashboard-command-start-to-page', budget(), async () => {
    const key = `k${i++}`;
    await page.evaluate((k) => {
      const w = window;
      w.__arrived = (w.__waitRunning as (k: string) => Promise<number>)(k);
    }, key);
    const t0 = now();
    const ran = env.exec(['sh', '-c', 'sleep 0.2', key]);
    const at = await page.evaluate(() => window.__arrived as Promise<number>);
    await ran;
    return at - t0;
  });
  results.push(page0.row({ engine: node.engine, how: 'from just before env.exec is sent to the command showing as running on the page' }));
  // The peer: the same event reaching a program's subscription, no page between.
  const stop = new AbortController();
  const waiting = new Map<string, (t: number) => void>();
  const sub = (async () => {
    for await (const e of berth.events({ signal: stop.signal })) {
      if (e.type === 'command.started') waiting.get(e.argv[e.argv.length - 1] ?? '')?.(now());
    }
  })().catch(() => undefined);
  let j = 0;
  try {
    await env.exec(['true']);
    const peer = await series('sdk-events-command-start', budget(), async () => {
      const key = `p${j++}`;
      const arrived = new Promise<number>((r) => waiting.set(key, r));
      const t0 = now();
      const ran = env.exec(['sh', '-c', 'true', key]);
      const at = await Promise.race([
        arrived,
        new Promise<number>((_, rej) => setTimeout(() => rej(new Error('no event in 10 s')), 10_000)),
      ]);
      await ran;
      return at - t0;
    });
    results.push(peer.row({ engine: node.engine, how: 'the same, to berth.events() in this process (the peer without the page)' }));
  } finally {
    stop.abort();
    await sub;
  }
}

async function keystrokeEcho(page: Page, berth: Berth, node: BerthNode): Promise<void> {
  await page.locator('article[data-env="bench-0"]').getByRole('button', { name: 'Terminal' }).click();
  await page.locator('#panel button.takeover').click();
  await page.locator('#confirm-ok').click();
  await page.locator('#panel .mode.shell').waitFor();
  await page.locator('#panel .term').click();
  await page.keyboard.type('cat > /dev/null\n');
  await page.waitForTimeout(300);
  const s = await series('dashboard-keystroke-echo', budget(60), async () => {
    const echoed = page.evaluate(() => (window.__nextEcho as () => Promise<number>)());
    await page.keyboard.press('a');
    return echoed;
  });
  const parts = await page.evaluate(() => window.__echoParts as number[][]);
  const part = (i: number): number | null => (parts.length ? p50(parts.map((x) => x[i]!)) : null);
  results.push(
    s.row({
      engine: node.engine,
      how: 'keydown in the page to the echoed character drawn by xterm.js (through the dashboard and the node)',
      p50_key_to_send_ms: part(0),
      p50_send_to_echo_ms: part(1),
      p50_echo_to_drawn_ms: part(2),
    }),
  );
  // Between the two: a byte on the dashboard's own terminal WebSocket, from this process with
  // the page's session cookie, until its echo comes back (the dashboard's bridge, no browser).
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const host = new URL(page.url()).host;
  const port = new URL(page.url()).port;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/terminal?env=bench-0&mode=shell&cols=80&rows=24`, {
    headers: { host, origin: `http://${host}`, cookie },
  });
  let onEcho: (() => void) | null = null;
  const opened = new Promise<void>((resolve, reject) => {
    ws.on('message', (d, bin) => {
      if (bin) onEcho?.();
      else if (String(d).includes('"session"')) resolve();
    });
    ws.on('error', reject);
  });
  try {
    await opened;
    ws.send(Buffer.from('cat > /dev/null\n'));
    await new Promise((r) => setTimeout(r, 300));
    const bridge = await series('dashboard-terminal-websocket-echo', budget(60), async () => {
      const got = new Promise<void>((r) => (onEcho = r));
      const t0 = performance.now();
      ws.send(Buffer.from('a'));
      await got;
      return performance.now() - t0;
    });
    results.push(
      bridge.row({ engine: node.engine, how: "a byte on the dashboard's terminal WebSocket (no browser) until its echo arrives" }),
    );
  } finally {
    ws.close();
  }
  // The peer: a byte written on the node's PTY WebSocket until its echo comes back.
  const env = await berth.get('bench-0');
  let onOut: (() => void) | null = null;
  const pty = berth.client.pty(env.name, { cols: 80, rows: 24, argv: ['cat'] }, () => onOut?.());
  pty.exit.catch(() => undefined);
  await pty.session;
  try {
    const peer = await series('pty-websocket-echo', budget(60), async () => {
      const got = new Promise<void>((r) => (onOut = r));
      const t0 = performance.now();
      pty.write(Buffer.from('a'));
      await got;
      return performance.now() - t0;
    });
    results.push(
      peer.row({
        engine: node.engine,
        how: 'a byte on the PTY WebSocket (berth shell) until its echo arrives (the peer without the page)',
      }),
    );
  } finally {
    pty.close();
  }
}

runBench(report, (opts['max-seconds'] + 90) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engine);
  const engine: EngineName = engines[0]!;
  const { digest, repo } = await prepareEngineBench(report, opts, engines.slice(0, 1), results);
  const node = await BerthNode.start(engine, digest, { env: { BERTH_DASHBOARD: '127.0.0.1:0' } });
  const berth = await Berth.connect({ socketPath: node.socketPath, autostart: false });
  onCleanup('close the SDK', () => berth.close());
  // Removed four at a time before the node stops (cleanups run last first).
  onCleanup('remove the environments', async () => {
    const names = (await berth.list()).map((e) => e.name);
    const lane = async (): Promise<void> => {
      for (let n = names.pop(); n; n = names.pop()) await berth.client.removeEnv(n, { discard: true }).catch(() => undefined);
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
  });
  // The other nodes, each known to this one by name; environment i lives on node i % nodes.
  const sdks = [berth];
  for (let j = 1; j < Math.max(1, opts.nodes); j++) {
    const other = await BerthNode.start(engine, digest, { listen: '127.0.0.1:0' });
    const sdk = await Berth.connect({ socketPath: other.socketPath, autostart: false });
    onCleanup(`close the SDK of node ${j + 1}`, () => sdk.close());
    sdks.push(sdk);
    const tcp = await other.tcpEndpoint();
    const tokenFile = join(node.home, `n${j + 1}.token`);
    writeFileSync(tokenFile, tcp.token, { mode: 0o600 });
    const add = await node.cli(['node', 'add', `n${j + 1}`, `tcp://${tcp.host}:${tcp.port}`, '--token-file', tokenFile]);
    if (add.code !== 0) throw new Error(`berth node add exited ${add.code}: ${add.stderr.trim()}`);
  }
  const t0 = performance.now();
  const todo = Array.from({ length: opts.envs }, (_, i) => i);
  const make = async (): Promise<void> => {
    for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
      await sdks[i % sdks.length]!.create({ name: `bench-${i}`, repo, agent: `agent-${i % 7}`, task: `task ${i}` });
    }
  };
  await Promise.all([make(), make(), make()]);
  log(`${opts.envs} environments on ${sdks.length} node(s) in ${Math.round(performance.now() - t0)} ms`);
  const link = await node.cli(['dashboard', '--json']);
  if (link.code !== 0) throw new Error(`berth dashboard exited ${link.code}: ${link.stderr.trim()}`);
  const url = (JSON.parse(link.stdout) as { url: string }).url;
  const base = url.slice(0, url.indexOf('/login'));
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  onCleanup('close Chromium', () => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
  await page.addInitScript(probes, opts.envs);
  await page.goto(url);
  await page.waitForURL(`${base}/`);
  const g = (name: string, fn: () => Promise<void>): Promise<void> => guarded(results, name, { engine }, fn);
  await g('dashboard-first-render', () => firstRender(page, base));
  await g('dashboard-command-start-to-page', () => commandStart(page, berth, node));
  await g('dashboard-keystroke-echo', () => keystrokeEcho(page, berth, node));
  const p50 = (name: string): number | null => results.find((r) => r.name === name)?.p50_ms ?? null;
  report.ratios_p50 = {
    'command-start: page / sdk-events': ratio(p50('dashboard-command-start-to-page'), p50('sdk-events-command-start')),
    'keystroke-echo: page / pty-websocket': ratio(p50('dashboard-keystroke-echo'), p50('pty-websocket-echo')),
    'keystroke-echo: dashboard websocket / pty-websocket': ratio(p50('dashboard-terminal-websocket-echo'), p50('pty-websocket-echo')),
  };
  report.meets_targets = {
    'first-render_p50_le_1000_ms': (p50('dashboard-first-render') ?? Infinity) <= 1000,
    'command-start-to-page_p50_le_100_ms': (p50('dashboard-command-start-to-page') ?? Infinity) <= 100,
    'keystroke-echo_p50_le_30_ms': (p50('dashboard-keystroke-echo') ?? Infinity) <= 30,
  };
});
