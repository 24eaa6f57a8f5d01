// Every bad input: a one-line error that says what to do, a distinct exit code (and 4xx/5xx
// in the API), and nothing half-made left behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, makeRepo, NodeFixture, run, testEngines, failureTracker } from '../helpers/fixture.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^berth: /);
  return lines[0]!;
}

type ApiBody = { error?: { code: string; message: string } };

function api(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; json: ApiBody }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as ApiBody }),
      );
    });
    // A server that answers early (413) closes the connection while the body is still going.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    req.on('socket', (s) => s.on('error', () => {}));
    req.end(body);
  });
}

for (const engine of testEngines()) {
  describe(`bad input on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });
    const nothingLeft = (): void => {
      assert.deepEqual(node.containers(), [], 'a container was left behind');
      assert.deepEqual(readdirSync(join(node.home, 'envs')), [], 'an environment directory was left behind');
    };

    it('unknown environment', () =>
      track(
        (async () => {
          for (const args of [
            ['exec', 'nope', '--', 'true'],
            ['describe', 'nope'],
            ['rm', 'nope'],
          ]) {
            const r = await node.cli(args);
            assert.equal(r.code, 4, args.join(' '));
            assert.match(oneLine(r.stderr), /no environment named nope.*berth ls/);
          }
          const res = await api(join(node.home, 'berth.sock'), 'GET', '/v1/envs/nope');
          assert.equal(res.status, 404);
          assert.equal(res.json.error?.code, 'not_found');
        })(),
      ));

    it('invalid and duplicate names', () =>
      track(
        (async () => {
          for (const bad of ['Bad_Name', '-x', 'a'.repeat(64), '../etc']) {
            const r = await node.cli(['new', bad, '--repo', repo.path]);
            assert.equal(r.code, 3, bad);
            assert.match(oneLine(r.stderr), /invalid environment name/);
          }
          const ok = await node.cli(['new', 'dup', '--repo', repo.path]);
          assert.equal(ok.code, 0, ok.stderr);
          const again = await node.cli(['new', 'dup', '--repo', repo.path]);
          assert.equal(again.code, 5);
          assert.match(oneLine(again.stderr), /already exists/);
          assert.equal(node.containers().length, 1);
          await node.cli(['rm', 'dup']);
          nothingLeft();
        })(),
      ));

    it('a repository or ref that does not exist', () =>
      track(
        (async () => {
          const missing = await node.cli(['new', 'r1', '--repo', '/nonexistent/repo']);
          assert.equal(missing.code, 6);
          assert.match(oneLine(missing.stderr), /does not exist/);
          const notGit = mkdtempSync(join(tmpdir(), 'not-git-'));
          const plain = await node.cli(['new', 'r2', '--repo', notGit]);
          rmSync(notGit, { recursive: true });
          assert.equal(plain.code, 6);
          assert.match(oneLine(plain.stderr), /not a git repository/);
          const ref = await node.cli(['new', 'r3', '--repo', repo.path, '--ref', 'no-such-branch']);
          assert.equal(ref.code, 7);
          assert.match(oneLine(ref.stderr), /ref no-such-branch does not exist/);
          const url = await node.cli(['new', 'r4', '--repo', 'file:///nonexistent/remote.git']);
          assert.equal(url.code, 6);
          oneLine(url.stderr);
          const ls = await node.json<unknown[]>(['ls']);
          assert.deepEqual(ls, []);
          nothingLeft();
        })(),
      ));

    it('an image that is missing', () =>
      track(
        (async () => {
          const r = await node.cli(['new', 'img', '--repo', repo.path, '--toolchain', 'sha256:' + '0'.repeat(64)]);
          assert.equal(r.code, 8);
          assert.match(oneLine(r.stderr), /not on this node.*toolchain build/);
          nothingLeft();
        })(),
      ));

    it('a command that is not found, and a command line without a command', () =>
      track(
        (async () => {
          await node.json(['new', 'cmd', '--repo', repo.path]);
          const r = await node.cli(['exec', 'cmd', '--', 'no-such-command', '--flag']);
          assert.equal(r.code, 127);
          assert.match(oneLine(r.stderr), /command not found: no-such-command/);
          const none = await node.cli(['exec', 'cmd']);
          assert.equal(none.code, 2);
          oneLine(none.stderr);
          await node.cli(['rm', 'cmd']);
        })(),
      ));

    it('malformed API requests get 4xx and a stable code', () =>
      track(
        (async () => {
          const sock = join(node.home, 'berth.sock');
          const notJson = await api(sock, 'POST', '/v1/envs', '{oops');
          assert.equal(notJson.status, 400);
          assert.equal(notJson.json.error?.code, 'invalid_request');
          const noRepo = await api(sock, 'POST', '/v1/envs', JSON.stringify({ name: 'x' }));
          assert.equal(noRepo.status, 400);
          const extra = await api(sock, 'POST', '/v1/envs', JSON.stringify({ name: 'x', repo: repo.path, bogus: 1 }));
          assert.equal(extra.status, 400);
          const badLimits = await api(sock, 'POST', '/v1/envs', JSON.stringify({ name: 'x', repo: repo.path, limits: { memoryMb: 1 } }));
          assert.equal(badLimits.status, 400);
          const route = await api(sock, 'GET', '/v1/nothing');
          assert.equal(route.status, 404);
          const big = await api(sock, 'POST', '/v1/envs', JSON.stringify({ name: 'x', repo: 'y'.repeat(17 * 1024 * 1024) }));
          assert.equal(big.status, 413);
          nothingLeft();
        })(),
      ));

    it('a daemon killed in the middle of `new` leaves nothing half-made once it restarts', () =>
      track(
        (async () => {
          for (const point of ['create:after-row', 'create:after-container', 'create:after-agent']) {
            await node.killDaemon('SIGTERM');
            await node.startDaemon({ BERTH_FAILPOINTS: point });
            const pending = node.cli(['new', 'crash', '--repo', repo.path]);
            for (let i = 0; i < 400 && !node.log().includes(`failpoint ${point} reached`); i++) await sleep(25);
            assert.ok(node.log().includes(`failpoint ${point} reached`), `never reached ${point}`);
            await node.killDaemon('SIGKILL');
            const r = await pending;
            assert.equal(r.code, 11, `${point}: ${r.stderr}`);
            assert.match(oneLine(r.stderr), /daemon stopped while handling the request/);
            await node.startDaemon();
            const ls = await node.json<unknown[]>(['ls']);
            assert.deepEqual(ls, [], point);
            nothingLeft();
          }
        })(),
      ));

    it('no daemon running, and an engine that is not there', () =>
      track(
        (async () => {
          await node.killDaemon('SIGTERM');
          const r = await node.cli(['ls']);
          assert.equal(r.code, 10);
          assert.match(oneLine(r.stderr), /no berth daemon is running.*berth daemon/);

          const home = mkdtempSync(join(tmpdir(), 'berth-noengine-'));
          const dead = join(home, 'dead.sock');
          writeFileSync(dead, '');
          for (const target of [`unix://${dead}`, 'unix:///nonexistent/engine.sock']) {
            const d = await run(process.execPath, [BERTH, 'daemon'], {
              env: { ...process.env, BERTH_HOME: home, BERTH_ENGINE: target },
              timeoutMs: 30_000,
            });
            assert.equal(d.code, 9, d.stderr);
            assert.match(oneLine(d.stderr), /not answering/);
          }
          rmSync(home, { recursive: true, force: true });
          await node.startDaemon();
        })(),
      ));
  });
}
