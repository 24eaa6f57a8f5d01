// The dashboard across three nodes, in a real browser: this node and two others it knows over
// TCP (`berth node add`). Every environment shows on the one page under NODE/ENV, live; the
// page acts on a remote environment through its node; a remote service's preview goes through
// this node; a node that goes down says so on the page and comes back by itself.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { failureTracker, makeRepo, NodeFixture, ROOT, testEngines } from '../helpers/fixture.js';

const CHROMIUM = '/usr/bin/chromium';

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

// The remote nodes run on the same engine as this one: what is tested is the page and its
// feed across nodes, which do not depend on the engine (the one-node page runs on both).
const engine = testEngines()[0]!;

describe(`the dashboard across three nodes (${engine})`, { skip: !existsSync(CHROMIUM) && 'Chromium is not installed' }, () => {
  const t = failureTracker();
  let here: NodeFixture;
  const remotes: Array<{ name: string; f: NodeFixture; port: number }> = [];
  let repo: ReturnType<typeof makeRepo>;
  let browser: Browser;
  let page: Page;
  let base: string;
  const card = (key: string) => page.locator(`article[data-env="${key}"]`);
  const remote = (name: string) => remotes.find((r) => r.name === name)!;
  const confirm = async (note?: string): Promise<void> => {
    await page.locator('dialog#confirm').waitFor();
    if (note !== undefined) await page.locator('#confirm-note').fill(note);
    await page.locator('#confirm-ok').click();
  };
  const addNode = async (name: string): Promise<void> => {
    const r = remote(name);
    const tokenFile = join(here.home, `${name}.token`);
    writeFileSync(tokenFile, readFileSync(join(r.f.home, 'token'), 'utf8'), { mode: 0o600 });
    const add = await here.cli(['node', 'add', name, `tcp://127.0.0.1:${r.port}`, '--token-file', tokenFile]);
    assert.equal(add.code, 0, add.stderr);
  };

  before(async () => {
    repo = makeRepo();
    here = await NodeFixture.start(engine);
    for (const name of ['n2', 'n3']) {
      const port = await freePort();
      remotes.push({ name, port, f: await NodeFixture.startWith(engine, ['--listen', `127.0.0.1:${port}`]) });
    }
    await here.json(['new', 'local-1', '--repo', repo.path, '--agent', 'claude-0', '--task', 'here']);
    await remote('n2').f.json(['new', 'a-1', '--repo', repo.path, '--agent', 'claude-2', '--task', 'on n2']);
    await remote('n3').f.json(['new', 'b-1', '--repo', repo.path, '--agent', 'claude-3', '--task', 'on n3']);
    // n2 is known from the start; n3 is added while the dashboard runs.
    await addNode('n2');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
    const url = (await here.json<{ url: string }>(['dashboard'])).url;
    base = url.slice(0, url.indexOf('/login'));
    await page.goto(url);
    await page.waitForURL(`${base}/`);
  });

  after(async () => {
    await browser?.close();
    for (const r of remotes) await r.f.stop(t.failed);
    await here?.stop(t.failed);
    repo?.cleanup();
  });

  it("shows this node's environments and a known node's, and a node added later from the next page load", () =>
    t.track(
      (async () => {
        await card('local-1').waitFor();
        await card('n2/a-1').waitFor();
        assert.match((await card('n2/a-1').locator('.who').textContent()) ?? '', /claude-2 · on n2/);
        await addNode('n3');
        await page.reload();
        await card('n3/b-1').locator('.state').filter({ hasText: 'running' }).waitFor();
        await page.locator('#summary').filter({ hasText: '3 environments on 3 nodes' }).waitFor();
      })(),
    ));

  it("a command run on another node shows live, with its exit code and its output's tail", () =>
    t.track(
      (async () => {
        const child = spawn(
          process.execPath,
          [join(ROOT, 'bin', 'berth'), 'exec', 'a-1', '--', 'sh', '-c', 'echo remote-$((6*7)); sleep 1.5; echo bye >&2; exit 5'],
          { env: remote('n2').f.env, stdio: 'ignore' },
        );
        const exited = new Promise<number | null>((r) => child.on('exit', r));
        await card('n2/a-1').locator('.running code').filter({ hasText: 'sleep 1.5' }).waitFor();
        assert.equal(await exited, 5);
        await card('n2/a-1').locator('.last .exit').filter({ hasText: 'exited 5' }).waitFor();
        const tail = card('n2/a-1').locator('pre.tail.command');
        await tail.filter({ hasText: 'remote-42' }).waitFor();
        assert.match((await tail.textContent()) ?? '', /remote-42\nbye/);
      })(),
    ));

  it('pauses an environment on another node from the page; that node says so', () =>
    t.track(
      (async () => {
        await card('n3/b-1').getByRole('button', { name: 'Pause' }).click();
        await confirm();
        await card('n3/b-1').locator('.state').filter({ hasText: 'paused' }).waitFor();
        const ls = await remote('n3').f.json<Array<{ name: string; state: string }>>(['ls']);
        assert.equal(ls.find((e) => e.name === 'b-1')?.state, 'paused');
        await card('n3/b-1').getByRole('button', { name: 'Resume' }).click();
        await confirm();
        await card('n3/b-1').locator('.state').filter({ hasText: 'running' }).waitFor();
      })(),
    ));

  it('opens a terminal on another node, takes over, and types in it', () =>
    t.track(
      (async () => {
        await card('n2/a-1').getByRole('button', { name: 'Terminal' }).click();
        await page.locator('#panel button.takeover').click();
        await confirm('looking from the dashboard');
        await page.locator('#panel .mode.shell').waitFor();
        await page.locator('#panel .term').click();
        await page.keyboard.type('echo "$BERTH_ENV-$((7*6))"\n');
        await page.locator('#panel .xterm-rows').filter({ hasText: 'a-1-42' }).waitFor();
        const d = await remote('n2').f.json<{ lease: { note: string } | null }>(['describe', 'a-1']);
        assert.equal(d.lease?.note, 'looking from the dashboard');
        await page.locator('#panel button.handback').click();
        await confirm('done here');
        await card('n2/a-1').locator('.handback').filter({ hasText: 'done here' }).waitFor();
        await page.locator('#panel-close').click();
      })(),
    ));

  it('serves a service on another node at its preview URL, through this node', () =>
    t.track(
      (async () => {
        const app =
          "require('http').createServer((q,s)=>{s.setHeader('content-type','text/html');s.end('<h1>hello from n2</h1>')}).listen(8080)";
        await remote('n2').f.json(['service', 'start', 'a-1', 'web', '--ready', 'http:8080/', '--', 'node', '-e', app]);
        const link = card('n2/a-1').locator('a.port').filter({ hasText: ':8080' });
        await link.waitFor();
        const [preview] = await Promise.all([page.context().waitForEvent('page'), link.click()]);
        await preview.locator('h1').filter({ hasText: 'hello from n2' }).waitFor();
        assert.match(new URL(preview.url()).host, /^8080--a-1\.n2\.localhost:\d+$/);
        await preview.close();
      })(),
    ));

  it('a node that goes down says so on the page and on its cards; it comes back by itself, with what changed meanwhile', () =>
    t.track(
      (async () => {
        const n3 = remote('n3');
        await n3.f.killDaemon('SIGTERM');
        await page
          .locator('#nodes .node-down')
          .filter({ hasText: /node n3 is unreachable/ })
          .waitFor();
        await card('n3/b-1').locator('.node-out').waitFor();
        mkdirSync(join(ROOT, 'docs', 'img'), { recursive: true });
        await page.screenshot({ path: join(ROOT, 'docs', 'img', 'dashboard-nodes.png') });
        // The rest of the page goes on.
        await card('n2/a-1').locator('.node-out').waitFor({ state: 'detached' });
        await n3.f.startDaemonWith(['--listen', `127.0.0.1:${n3.port}`]);
        await n3.f.json(['new', 'b-2', '--repo', repo.path, '--agent', 'claude-3', '--task', 'made after the restart']);
        await card('n3/b-2').waitFor({ timeout: 60_000 });
        await card('n3/b-1').locator('.node-out').waitFor({ state: 'detached' });
        assert.equal(await page.locator('#nodes .node-down').count(), 0);
        await page.locator('#summary').filter({ hasText: '4 environments on 3 nodes' }).waitFor();
      })(),
    ));
});
