// Every bad input: a one-line error that says what to do, a distinct exit code (and 4xx/5xx
// in the API), and nothing half-made left behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, makeRepo, NodeFixture, run, testEngines, failureTracker } from '../helpers/fixture.js';
import { TAR_END, tarHeader, tarPadding } from '../../src/toolchain/tar.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^berth: /);
  return lines[0]!;
}

type ApiBody = { error?: { code: string; message: string } };

/** Keep-alive sockets are reused: each gets one quiet error listener, not one per request. */
const quieted = new WeakSet<import('node:net').Socket>();
const quiet = (s: import('node:net').Socket): void => {
  if (quieted.has(s)) return;
  quieted.add(s);
  s.on('error', () => {});
};

function api(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = typeof body === 'string' ? { 'content-type': 'application/json' } : {},
): Promise<{ status: number; json: ApiBody }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as ApiBody }),
      );
    });
    // A server that answers early (413) closes the connection while the body is still going.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    req.on('socket', quiet);
    req.end(body);
  });
}

/** A tar body PUT to the node's API, with headers of the caller's choosing. */
const putTar = (
  socketPath: string,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: ApiBody }> => api(socketPath, 'PUT', path, body, { 'content-type': 'application/x-tar', ...headers });

const tarFile = (name: string, text: string): Buffer => {
  const b = Buffer.from(text);
  return Buffer.concat([tarHeader(name, b.length, 1_700_000_000), b, tarPadding(b.length)]);
};
const tarLink = (name: string, target: string): Buffer => tarHeader(name, 0, 1_700_000_000, 0o777, '2', target);

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
    const nothingLeft = async (): Promise<void> => {
      assert.deepEqual(node.containers(), [], 'a container was left behind');
      const envs = await node.envsDir();
      assert.deepEqual(existsSync(envs) ? readdirSync(envs) : [], [], 'an environment directory was left behind');
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
          await nothingLeft();
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
          await nothingLeft();
        })(),
      ));

    it('an image that is missing', () =>
      track(
        (async () => {
          const r = await node.cli(['new', 'img', '--repo', repo.path, '--toolchain', 'sha256:' + '0'.repeat(64)]);
          assert.equal(r.code, 8);
          assert.match(oneLine(r.stderr), /not on this node.*toolchain build/);
          await nothingLeft();
        })(),
      ));

    it('archives unpack inside the environment only; bad targets, unknown names and oversize uploads are refused', () =>
      track(
        (async () => {
          const sock = join(node.home, 'berth.sock');
          await node.json(['new', 'arch', '--repo', repo.path, '--network', 'none']);
          const good = await putTar(sock, '/v1/envs/arch/archive?path=/tmp', Buffer.concat([tarFile('in/hello.txt', 'hi\n'), TAR_END]));
          assert.equal(good.status, 200, JSON.stringify(good.json));
          assert.equal((await node.cli(['exec', 'arch', '--', 'cat', '/tmp/in/hello.txt'])).stdout, 'hi\n');
          // A directory that is not there yet is made first, on every engine.
          const fresh = await putTar(sock, '/v1/envs/arch/archive?path=/opt/new/dir', Buffer.concat([tarFile('a.txt', 'a\n'), TAR_END]));
          assert.equal(fresh.status, 200, JSON.stringify(fresh.json));
          assert.equal((await node.cli(['exec', 'arch', '--', 'cat', '/opt/new/dir/a.txt'])).stdout, 'a\n');

          // An archive that tries to leave: a climbing name, and a link to the host's /tmp
          // followed by a file through it. Whatever the engine answers, the host is untouched.
          const marker = `berth-escape-${process.pid}-${Date.now()}`;
          const evil = Buffer.concat([
            tarFile(`../../../../../../../tmp/${marker}`, 'out\n'),
            tarLink('hostdir', '/tmp'),
            tarFile(`hostdir/${marker}-2`, 'out\n'),
            TAR_END,
          ]);
          const escaped = await putTar(sock, '/v1/envs/arch/archive?path=/tmp', evil);
          assert.ok(escaped.status === 200 || escaped.status >= 400, `status ${escaped.status}`);
          assert.equal(existsSync(`/tmp/${marker}`), false, 'a climbing name reached the host');
          assert.equal(existsSync(`/tmp/${marker}-2`), false, 'a link reached the host');

          for (const [path, status, code] of [
            ['/v1/envs/arch/archive?path=tmp', 400, 'invalid_request'],
            ['/v1/envs/arch/archive?path=/tmp/../etc', 400, 'invalid_request'],
            ['/v1/envs/arch/archive', 400, 'invalid_request'],
            ['/v1/envs/nope/archive?path=/tmp', 404, 'not_found'],
            ['/v1/envs/arch/archive?path=/proc/1/nope', 400, 'invalid_request'],
          ] as const) {
            const r = await putTar(sock, path, Buffer.concat([tarFile('x', 'x'), TAR_END]));
            assert.equal(r.status, status, `${path}: ${JSON.stringify(r.json)}`);
            assert.equal(r.json.error?.code, code, path);
            assert.ok(!r.json.error?.message.includes('\n'), 'one line');
          }
          const huge = await putTar(sock, '/v1/envs/arch/archive?path=/tmp', Buffer.alloc(1024), {
            'content-length': String(9 * 1024 ** 3),
          });
          assert.equal(huge.status, 413);
          assert.equal(huge.json.error?.code, 'too_large');
          // That refusal came before the body was read, on a keep-alive socket (putTar uses the
          // default agent): the node closed the connection, so the next request on the agent is
          // answered instead of being read as the rest of the 9 GiB body.
          const next = await Promise.race([api(sock, 'GET', '/v1/envs'), sleep(10_000).then(() => null)]);
          assert.equal(next?.status, 200, 'the request after a refused upload was answered');
          await node.cli(['rm', '--discard', 'arch']);
          await nothingLeft();
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
          // A query the contract does not allow is refused, not guessed at: `since=abc` is not a
          // live stream from now.
          const badSince = await api(sock, 'GET', '/v1/events?since=abc');
          assert.equal(badSince.status, 400);
          assert.equal(badSince.json.error?.code, 'invalid_request');
          assert.match(badSince.json.error?.message ?? '', /since/);
          await nothingLeft();
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
            await nothingLeft();
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
