// The supervision dashboard in a real browser (Debian's Chromium, driven by playwright-core)
// against a real node with real environments: what a human sees and does, and what the node
// then says through the CLI. The page's screenshots in docs/img are made here.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { NodeClient } from '../../src/client/client.js';
import { failureTracker, makeRepo, NodeFixture, ROOT, testEngines } from '../helpers/fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const IMG = join(ROOT, 'docs', 'img');

/** Until `check` passes, 30 s at most. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 30_000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(150);
  }
  throw new Error(`${what}: not within 30 s${last ? ` (${String(last)})` : ''}`);
}

function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    // Node does not resolve *.localhost names as browsers do: loopback, with the name in Host.
    const u = new URL(url);
    const headers = { host: u.host, ...opts.headers };
    const at = { host: '127.0.0.1', port: u.port, path: u.pathname + u.search };
    const req = http.request({ ...at, method: opts.method ?? 'GET', headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

for (const engine of testEngines()) {
  describe(`the dashboard on ${engine}`, { skip: !existsSync(CHROMIUM) && 'Chromium is not installed (apt-get install chromium)' }, () => {
    const t = failureTracker();
    let f: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let browser: Browser;
    let ctx: BrowserContext;
    let page: Page;
    let client: NodeClient;
    let base: string;
    const shots = engine === testEngines()[0];

    const loginUrl = async (): Promise<string> => (await f.json<{ url: string }>(['dashboard'])).url;
    const card = (name: string) => page.locator(`article[data-env="${name}"]`);
    const confirm = async (p: Page, note?: string): Promise<void> => {
      await p.locator('dialog#confirm').waitFor();
      if (note !== undefined) await p.locator('#confirm-note').fill(note);
      await p.locator('#confirm-ok').click();
    };

    before(async () => {
      f = await NodeFixture.start(engine);
      repo = makeRepo();
      client = new NodeClient({ socketPath: join(f.home, 'berth.sock') });
      await f.json(['new', 'demo', '--repo', repo.path, '--agent', 'demo-agent', '--task', 'show berth']);
      await f.json(['new', 'fix-login', '--repo', repo.path, '--agent', 'claude-1', '--task', 'fix the login form']);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      page = await ctx.newPage();
      const url = await loginUrl();
      base = url.slice(0, url.indexOf('/login'));
    });

    after(async () => {
      await browser?.close();
      client?.close();
      await f?.stop(t.failed);
      repo?.cleanup();
    });

    it('a wrong token gets a login page, not a stack trace; an agent token gets no link', () =>
      t.track(
        (async () => {
          const p = await browser.newPage();
          await p.goto(`${base}/login#not-a-token`);
          await p.locator('#login-state.bad').waitFor();
          assert.match((await p.locator('#login-state').textContent()) ?? '', /not valid.*berth dashboard/);
          assert.doesNotMatch(await p.content(), /at \w+ \(|Error:/);
          // No session: the page itself sends the browser to the login page.
          await p.goto(`${base}/`);
          assert.equal(new URL(p.url()).pathname, '/login');
          await p.close();
          const token = await f.json<{ token: string }>(['token', 'create', '--agent', 'claude-1']);
          const r = await f.cli(['dashboard'], { env: { BERTH_TOKEN: token.token } });
          assert.equal(r.code, 23, r.stderr);
          assert.match(r.stderr, /^berth: the dashboard needs the node's own token[^\n]*\n$/);
          // The API refuses without a session, and a page of another origin outright.
          assert.equal((await request(`${base}/api/feed`)).status, 401);
          const cross = await request(`${base}/api/envs/demo/pause`, {
            method: 'POST',
            headers: { origin: 'http://evil.example' },
            body: '{}',
          });
          assert.equal(cross.status, 403);
          const page0 = await request(`${base}/login`);
          assert.match(String(page0.headers['content-security-policy']), /default-src 'self'.*frame-ancestors 'none'/);
          assert.equal(page0.headers['x-frame-options'], 'DENY');
          assert.equal((await request(`${base}/`, { headers: { host: 'rebound.example:80' } })).status, 421);
        })(),
      ));

    it('opens the page and shows the environments, those waiting for a human first', () =>
      t.track(
        (async () => {
          await client.setStatus('fix-login', { state: 'waiting', note: 'need a decision: keep the old API?' });
          await page.goto(await loginUrl());
          await page.waitForURL(`${base}/`);
          await card('demo').waitFor();
          await card('fix-login').locator('.status-note').filter({ hasText: 'keep the old API' }).waitFor();
          assert.equal(await page.locator('#cards > article').first().getAttribute('data-env'), 'fix-login');
          assert.match((await card('demo').locator('.who').textContent()) ?? '', /demo-agent · show berth/);
          assert.equal(await card('demo').locator('.state').textContent(), 'running');
          // The session cookie is HttpOnly and SameSite=Strict.
          const c = (await ctx.cookies(base)).find((x) => x.name === 'berth_session');
          assert.ok(c?.httpOnly && c.sameSite === 'Strict');
        })(),
      ));

    it("keeps its session cookie to its own name: an environment's app forwarded to localhost never sees it", () =>
      t.track(
        (async () => {
          assert.match(base, /^http:\/\/berth\.localhost:\d+$/);
          const port = new URL(base).port;
          // The bare loopback names are sent on to berth.localhost, the path kept, no cookie set.
          const bare = await request(`http://127.0.0.1:${port}/login`);
          assert.equal(bare.status, 308);
          assert.equal(bare.headers.location, `${base}/login`);
          assert.equal(bare.headers['set-cookie'], undefined);
          // What `berth forward ENV 3000` serves on loopback, as the signed-in browser opens it.
          const seen: string[] = [];
          const app = http.createServer((req, res) => {
            seen.push(req.headers.cookie ?? '');
            res.end('app');
          });
          await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
          const appPort = (app.address() as { port: number }).port;
          try {
            const tab = await ctx.newPage();
            for (const h of ['127.0.0.1', 'localhost']) await tab.goto(`http://${h}:${appPort}/`);
            await tab.close();
          } finally {
            app.close();
          }
          assert.ok(seen.length >= 2, 'the browser opened the app on both names');
          assert.ok(
            seen.every((c) => !c.includes('berth_session')),
            seen.join(' | '),
          );
          assert.ok((await ctx.cookies(base)).some((x) => x.name === 'berth_session'));
        })(),
      ));

    it('a command started with the CLI appears as running, then ends with its exit code', () =>
      t.track(
        (async () => {
          const child = spawn(
            process.execPath,
            [join(ROOT, 'bin', 'berth'), 'exec', 'demo', '--', 'sh', '-c', 'echo out-$((6*7)); sleep 1.5; exit 3'],
            {
              env: f.env,
              stdio: 'ignore',
            },
          );
          const exited = new Promise<number | null>((r) => child.on('exit', r));
          await card('demo').locator('.running code').filter({ hasText: 'sleep 1.5' }).waitFor();
          assert.equal(await exited, 3);
          await card('demo').locator('.last .exit').filter({ hasText: 'exited 3' }).waitFor();
          // Its output's tail, as plain text.
          await card('demo').locator('pre.tail.command').filter({ hasText: 'out-42' }).waitFor();
        })(),
      ));

    it('opens a terminal, takes over, types a command and sees its output', () =>
      t.track(
        (async () => {
          await card('demo').getByRole('button', { name: 'Terminal' }).click();
          await page.locator('#panel .mode').filter({ hasText: 'read-only' }).waitFor();
          await page.locator('#panel button.takeover').click();
          await confirm(page, 'checking the failing test');
          await page.locator('#panel .mode.shell').waitFor();
          await card('demo').locator('.lease').filter({ hasText: 'checking the failing test' }).waitFor();
          await page.locator('#panel .term').click();
          await page.keyboard.type('echo dash-$((6*7))\n');
          await page.locator('#panel .xterm-rows').filter({ hasText: 'dash-42' }).waitFor();
          const d = await f.json<{ lease: { holder: string; note: string } | null }>(['describe', 'demo']);
          assert.equal(d.lease?.note, 'checking the failing test');
          if (shots) {
            mkdirSync(IMG, { recursive: true });
            await page.screenshot({ path: join(IMG, 'dashboard-terminal.png') });
          }
        })(),
      ));

    it('a closed terminal tab leaves no stray process', () =>
      t.track(
        (async () => {
          const tab = await ctx.newPage();
          await tab.goto(`${base}/`);
          await tab.locator('[data-env="demo"]').getByRole('button', { name: 'Terminal' }).click();
          await tab.locator('#panel .mode.shell').waitFor();
          await tab.locator('#panel .term').click();
          await tab.keyboard.type('echo tabshell-$$\n');
          const row = tab.locator('#panel .xterm-rows').filter({ hasText: /tabshell-\d+/ });
          await row.waitFor();
          const pid = /tabshell-(\d+)/.exec((await row.textContent()) ?? '')![1]!;
          const before = (await client.call('listPty', { params: { name: 'demo' } })).sessions.length;
          assert.ok(before >= 1);
          await tab.close();
          await until('the tab’s terminal closed', async () => {
            const n = (await client.call('listPty', { params: { name: 'demo' } })).sessions.length;
            return n === before - 1;
          });
          await until('the tab’s shell gone', async () => {
            const r = await f.cli(['exec', 'demo', '--', 'sh', '-c', `kill -0 ${pid} 2>/dev/null && echo alive || echo gone`]);
            return r.stdout.trim() === 'gone';
          });
        })(),
      ));

    it('hands back, and the note appears in describe', () =>
      t.track(
        (async () => {
          await page.locator('#panel button.handback').click();
          await confirm(page, 'fixed the import; carry on from here');
          await page.locator('#panel .mode').filter({ hasText: 'read-only' }).waitFor();
          await card('demo').locator('.handback').filter({ hasText: 'carry on from here' }).waitFor();
          const d = await f.json<{ lease: unknown; handback: { note: string } | null }>(['describe', 'demo']);
          assert.equal(d.lease, null);
          assert.equal(d.handback?.note, 'fixed the import; carry on from here');
          await page.locator('#panel-close').click();
        })(),
      ));

    it('pauses from the page, and the state changes everywhere', () =>
      t.track(
        (async () => {
          const other = await ctx.newPage();
          await other.goto(`${base}/`);
          await other.locator('[data-env="fix-login"] .state').filter({ hasText: 'running' }).waitFor();
          await card('fix-login').getByRole('button', { name: 'Pause' }).click();
          await confirm(page);
          await card('fix-login').locator('.state').filter({ hasText: 'paused' }).waitFor();
          await other.locator('[data-env="fix-login"] .state').filter({ hasText: 'paused' }).waitFor();
          const ls = await f.json<Array<{ name: string; state: string }>>(['ls']);
          assert.equal(ls.find((e) => e.name === 'fix-login')?.state, 'paused');
          await other.close();
          await card('fix-login').getByRole('button', { name: 'Resume' }).click();
          await confirm(page);
          await card('fix-login').locator('.state').filter({ hasText: 'running' }).waitFor();
        })(),
      ));

    it("serves a service's page at its preview URL, and still after a daemon restart", () =>
      t.track(
        (async () => {
          const app =
            "require('http').createServer((q,s)=>{s.setHeader('content-type','text/html');s.end('<h1>hello from demo</h1>')}).listen(8080)";
          await f.json(['service', 'start', 'demo', 'web', '--ready', 'http:8080/', '--', 'node', '-e', app]);
          const link = card('demo').locator('a.port').filter({ hasText: ':8080' });
          await link.waitFor();
          await card('demo').locator('.svc.ready').filter({ hasText: 'web' }).waitFor();
          if (shots) await page.screenshot({ path: join(IMG, 'dashboard.png') });
          const [preview] = await Promise.all([ctx.waitForEvent('page'), link.click()]);
          await preview.locator('h1').filter({ hasText: 'hello from demo' }).waitFor();
          const host = new URL(preview.url()).host;
          assert.match(host, /^8080--demo\.localhost:\d+$/);
          // Without the dashboard's session, the preview is not shown.
          const stranger = await browser.newPage();
          await stranger.goto(`http://${host}/`);
          assert.match(await stranger.locator('body').innerText(), /shown only to a dashboard session/);
          await stranger.close();
          // A login link printed before the restart still works once after it.
          const pending = await loginUrl();
          await f.killDaemon('SIGTERM');
          await f.startDaemon();
          // (Node does not resolve *.localhost names as browsers do: the host goes in the header.)
          const port = host.replace(/^.*:/, '');
          await until(
            'the dashboard back on its port',
            async () => (await request(`http://127.0.0.1:${port}/`, { headers: { host } }).catch(() => undefined))?.status === 401,
          );
          await preview.reload();
          await preview.locator('h1').filter({ hasText: 'hello from demo' }).waitFor();
          await preview.close();
          const late = await browser.newPage();
          await late.goto(pending);
          await late.waitForURL(`${base}/`);
          await late.locator('article[data-env="demo"]').waitFor();
          await late.close();
        })(),
      ));

    it('an environment that vanishes while open shows a clear message', () =>
      t.track(
        (async () => {
          await f.json(['new', 'doomed', '--repo', repo.path, '--agent', 'a-3', '--task', 'to be removed']);
          await page.reload();
          await card('doomed').getByRole('button', { name: 'Diff' }).click();
          await page.locator('#panel[data-env="doomed"]').waitFor();
          await f.json(['rm', 'doomed', '--discard']);
          await page.locator('#panel .gone').filter({ hasText: 'doomed is gone: removed' }).waitFor();
          await card('doomed').waitFor({ state: 'detached' });
        })(),
      ));
  });
}
