// Commands and requests that try to outlive or out-reach what berth allows: fork bombs that
// leave their process group and session, an environment starved of pids, and a commit fetch
// pointed at a black hole, a closed port, a server that is not berth, or a node that stalls.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import { mirrorPath } from '../../src/workspace/git.js';
import { cacheDir } from '../../src/toolchain/base-image.js';

/** Polls `probe` until `done` holds or `ms` pass; returns the last value seen. */
async function waitFor<T>(probe: () => Promise<T>, done: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await probe();
  while (!done(v) && Date.now() < deadline) {
    await sleep(500);
    v = await probe();
  }
  return v;
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^berth: /);
  return lines[0]!;
}

type Answer = { status: number; json: { error?: { code: string; message: string } } & Record<string, unknown> };

/** One request on the node's unix socket; status 0 if no answer comes within `ms`. */
function api(socketPath: string, method: string, path: string, body: unknown, ms = 90_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Answer['json'] }),
      );
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ status: 0, json: {} });
    }, ms);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    req.end(JSON.stringify(body));
  });
}

/** Processes on this machine whose environment holds `needle` (git and its helper carry the URL). */
function processesWith(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(needle)) continue;
      out.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ')}`);
    } catch {
      /* gone, or not ours to read */
    }
  }
  return out;
}

for (const engine of testEngines()) {
  describe(`hostile processes on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let baseline = 0;
    const tracker = failureTracker();
    const track = tracker.track;
    /** How many processes the environment holds, seen from inside (the shell's own glob: no
     * pipeline whose second half may or may not have started yet); null if it cannot say. */
    const count = async (): Promise<number | null> => {
      const r = await node.cli(['exec', 'bomb', '--', 'sh', '-c', 'set -- /proc/[0-9]*; echo $#']);
      return r.code === 0 ? Number(r.stdout.trim()) : null;
    };
    const backToBaseline = async (what: string): Promise<void> => {
      // At most the baseline: a process of the environment's own start-up that was still there
      // when the baseline was read may have ended since.
      const n = await waitFor(count, (v) => v !== null && v <= baseline, 60_000);
      assert.ok(
        n !== null && n <= baseline,
        `${what}: the environment still holds ${n ?? 'every one of its'} processes (baseline ${baseline})`,
      );
      const r = await node.cli(['exec', 'bomb', '--', 'true']);
      assert.equal(r.code, 0, r.stderr);
    };

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      await node.json(['new', 'bomb', '--repo', repo.path, '--pids', '128', '--network', 'none']);
      baseline = (await count()) ?? -1;
      assert.ok(baseline > 0 && baseline < 20, `baseline ${baseline}`);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('a fork bomb that leaves its process group and session ends with its timeout', () =>
      track(
        (async () => {
          const r = await node.cli([
            'exec',
            'bomb',
            '--timeout',
            '3',
            '--',
            'sh',
            '-c',
            'setsid bash -c ":(){ :|:& };:" 2>/dev/null & sleep 100',
          ]);
          assert.equal(r.code, 124, r.stderr);
          await backToBaseline('after the timeout');
        })(),
      ));

    it('what a command leaves behind when it exits (a double fork) still ends with its timeout', () =>
      track(
        (async () => {
          // Orphaned sleeps, each in a subshell that exits at once, until no pid is left.
          const filler = 'setsid sh -c "while :; do (sleep 1000 &); done" >/dev/null 2>&1 &';
          const r = await node.cli(['exec', 'bomb', '--timeout', '3', '--', 'sh', '-c', filler]);
          assert.equal(r.code, 0, r.stderr);
          await backToBaseline('after the deadline of a command that had exited');
        })(),
      ));

    it('an environment out of pids says so with its own code, and recovers when the command is killed', () =>
      track(
        (async () => {
          const filler = 'setsid sh -c "while :; do (sleep 1000 &); done" >/dev/null 2>&1 & exec sleep 1000';
          const holder = spawn(process.execPath, [BERTH, 'exec', 'bomb', '--', 'sh', '-c', filler], { env: node.env, stdio: 'ignore' });
          const held = new Promise((r) => holder.once('exit', r));
          try {
            const starved = await waitFor(
              () => node.cli(['exec', 'bomb', '--', 'true']),
              (r) => r.code !== 0,
              30_000,
            );
            assert.equal(starved.code, 22, starved.stderr);
            assert.match(oneLine(starved.stderr), /environment bomb has no process slots left \(\d+\/128 pids in use\)/);
            const viaApi = await api(join(node.home, 'berth.sock'), 'POST', '/v1/envs/bomb/exec', { argv: ['true'] });
            assert.equal(viaApi.status, 429);
            assert.equal(viaApi.json.error?.code, 'pids_exhausted');
          } finally {
            holder.kill('SIGKILL'); // the client goes away: the command and all it started end
            await held;
          }
          await backToBaseline('after its client went away');
        })(),
      ));
  });
}

const engine = testEngines()[0];
if (engine) {
  describe(`fetching commits from another node, on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let sock = '';
    let nodePort = 0;
    let token = '';
    const servers: Array<http.Server | net.Server> = [];
    const held: net.Socket[] = [];
    const seen: string[] = [];
    let blackhole = 0;
    let closed = 0;
    let notBerth = 0;
    let stalling = 0;
    const tracker = failureTracker();
    const track = tracker.track;
    const listen = async <S extends http.Server | net.Server>(s: S): Promise<number> => {
      servers.push(s);
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      return (s.address() as net.AddressInfo).port;
    };
    // Repository keys of this run only: a mirror found for one was made by this run.
    const run = `${process.pid}-${Date.now()}`;
    const fetchBody = (url: string, key: string): unknown => ({
      repo: `/nowhere/${run}/${key}`,
      commits: ['a'.repeat(40)],
      remote: { url, token: 'some-token', env: 'app' },
    });
    const noMirror = (key: string): void =>
      assert.equal(existsSync(mirrorPath(cacheDir(node.env), `/nowhere/${run}/${key}`)), false, 'a mirror was made');

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      nodePort = Number(/also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log())?.[1]);
      token = readFileSync(join(node.home, 'token'), 'utf8').trim();
      sock = join(node.home, 'berth.sock');
      // Accepts, then never says a word.
      blackhole = await listen(
        net.createServer((s) => {
          held.push(s);
          s.on('error', () => {});
        }),
      );
      const gone = net.createServer();
      closed = await listen(gone);
      await new Promise((r) => gone.close(r));
      servers.splice(servers.indexOf(gone), 1);
      // A web server that is not berth: it answers everything, and remembers what it was asked.
      notBerth = await listen(
        http.createServer((req, res) => {
          seen.push(`${req.method} ${req.url}`);
          res.end('<html>hello</html>');
        }),
      );
      // Looks like a berth node, then never serves git.
      const fake = http.createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({ node: 'fake', version: '0', engine: { name: 'none', endpoint: '', version: '0' }, defaultToolchain: null }),
        );
      });
      fake.on('upgrade', (_req, s: net.Socket) => {
        held.push(s);
        s.on('error', () => {});
      });
      stalling = await listen(fake);
    });
    after(async () => {
      held.forEach((s) => s.destroy());
      for (const s of servers) await new Promise((r) => s.close(r));
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('a black hole: an answer, and nothing left running', () =>
      track(
        (async () => {
          const url = `http://127.0.0.1:${blackhole}`;
          const r = await api(sock, 'POST', '/v1/repos/fetch', fetchBody(url, 'blackhole'));
          assert.equal(r.status, 503, JSON.stringify(r.json));
          assert.equal(r.json.error?.code, 'daemon_unreachable');
          const left = await waitFor(
            async () => processesWith(`BERTH_UPLOAD_URL=${url}`),
            (l) => l.length === 0,
            10_000,
          );
          assert.deepEqual(left, [], 'git or its helper was left running');
          noMirror('blackhole');
        })(),
      ));

    it('a closed port: unreachable, at once', () =>
      track(
        (async () => {
          const r = await api(sock, 'POST', '/v1/repos/fetch', fetchBody(`http://127.0.0.1:${closed}`, 'closed'), 30_000);
          assert.equal(r.status, 503, JSON.stringify(r.json));
          assert.equal(r.json.error?.code, 'daemon_unreachable');
          noMirror('closed');
        })(),
      ));

    it('a server that is not berth: refused before git runs', () =>
      track(
        (async () => {
          seen.length = 0;
          const r = await api(sock, 'POST', '/v1/repos/fetch', fetchBody(`http://127.0.0.1:${notBerth}`, 'not-berth'), 30_000);
          assert.equal(r.status, 400, JSON.stringify(r.json));
          assert.equal(r.json.error?.code, 'invalid_request');
          assert.match(r.json.error?.message ?? '', /is not a berth node/);
          assert.deepEqual(seen, ['GET /v1/node'], 'git talked to it');
          noMirror('not-berth');
        })(),
      ));

    it('other schemes, addresses, paths and repository keys are refused without a connection', () =>
      track(
        (async () => {
          seen.length = 0;
          const cases: Array<[string, string]> = [
            [`ftp://127.0.0.1:${notBerth}`, 'scheme'],
            [`file:///etc`, 'file'],
            [`http://0.0.0.0:${notBerth}`, 'unspecified'],
            [`http://127.0.0.1:${notBerth}/v1/envs`, 'path'],
            [`http://user:pw@127.0.0.1:${notBerth}`, 'userinfo'],
          ];
          for (const [url, key] of cases) {
            const r = await api(sock, 'POST', '/v1/repos/fetch', fetchBody(url, key), 30_000);
            assert.equal(r.status, 400, `${url}: ${JSON.stringify(r.json)}`);
            noMirror(key);
          }
          for (const bad of ['relative/dir', '/a/../b', '/x\u0001y']) {
            const r = await api(
              sock,
              'POST',
              '/v1/repos/fetch',
              { ...(fetchBody(`http://127.0.0.1:${notBerth}`, 'x') as object), repo: bad },
              30_000,
            );
            assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${JSON.stringify(r.json)}`);
          }
          assert.deepEqual(seen, [], 'a refused request reached a server');
        })(),
      ));

    it('a node that stalls in the middle of git: stopped, and git and its helper with it', () =>
      track(
        (async () => {
          const url = `http://127.0.0.1:${stalling}`;
          const during = waitFor(
            async () => processesWith(`BERTH_UPLOAD_URL=${url}`),
            (l) => l.length > 0,
            20_000,
          );
          const answer = api(sock, 'POST', '/v1/repos/fetch', fetchBody(url, 'stalling'));
          assert.notDeepEqual(await during, [], 'git never ran against the stalling node');
          const r = await answer;
          assert.equal(r.status, 504, JSON.stringify(r.json));
          assert.equal(r.json.error?.code, 'timeout');
          const left = await waitFor(
            async () => processesWith(`BERTH_UPLOAD_URL=${url}`),
            (l) => l.length === 0,
            10_000,
          );
          assert.deepEqual(left, [], 'git or its helper was left running');
          noMirror('stalling');
        })(),
      ));

    it('a real node still gives its commits', () =>
      track(
        (async () => {
          await node.json(['new', 'app', '--repo', repo.path, '--network', 'none']);
          const mirror = mirrorPath(cacheDir(node.env), `/nowhere/${run}/real`);
          try {
            const r = await api(sock, 'POST', '/v1/repos/fetch', {
              repo: `/nowhere/${run}/real`,
              commits: [repo.main],
              remote: { url: `http://127.0.0.1:${nodePort}`, token, env: 'app' },
            });
            assert.equal(r.status, 200, JSON.stringify(r.json));
            assert.deepEqual(r.json.fetched, [repo.main]);
            const wrong = await api(sock, 'POST', '/v1/repos/fetch', {
              repo: `/nowhere/${run}/wrong-token`,
              commits: [repo.main],
              remote: { url: `http://127.0.0.1:${nodePort}`, token: 'wrong', env: 'app' },
            });
            assert.equal(wrong.status, 401, JSON.stringify(wrong.json));
            noMirror('wrong-token');
          } finally {
            rmSync(mirror, { recursive: true, force: true });
            await node.cli(['rm', '--discard', 'app']);
          }
        })(),
      ));
  });
}
