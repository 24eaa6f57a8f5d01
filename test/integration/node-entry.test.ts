// The node's own entry point and the work that moved into it from the CLI: toolchains built and
// moved by the node behind `progress` routes (NDJSON progress, then the result), the CLI and the
// SDK over them, `berth up` running the node as a child, and the local node started on demand.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProgressLine } from '../../src/core/toolchain-api.js';
import {
  buildToolchain,
  InvalidRequestError,
  NodeClient,
  pullToolchain,
  toolchainStatus,
  type ProgressReport,
} from '../../src/sdk/index.js';
import { BERTH, failureTracker, NodeFixture, run, testEngines } from '../helpers/fixture.js';

/** One raw request on a unix socket: status, content type and body. */
function raw(socketPath: string, method: string, path: string, body?: unknown): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath,
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.setTimeout(300_000, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Waits until `check` holds, 30 s at most. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`${what}: not within 30 s`);
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const engine = testEngines()[0];
if (engine) {
  describe(`the node's entry point and toolchain routes on ${engine}`, () => {
    const { track, failed } = failureTracker();
    let node: NodeFixture;
    let client: NodeClient;
    const homes: string[] = [];
    const pids: number[] = [];
    const sock = (): string => join(node.home, 'berth.sock');
    const freshHome = (): string => {
      const h = mkdtempSync(join(tmpdir(), 'berth-entry-'));
      homes.push(h);
      return h;
    };

    before(async () => {
      node = await NodeFixture.start(engine);
      client = new NodeClient({ socketPath: sock() });
    });
    after(async () => {
      client?.close();
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
      await node?.stop(failed);
      for (const h of homes) rmSync(h, { recursive: true, force: true });
    });

    it('builds the toolchain on the node: NDJSON progress, then the result; the CLI draws it, the SDK hears it', () =>
      track(
        (async () => {
          const r = await raw(sock(), 'POST', '/v1/toolchain/build', {});
          assert.equal(r.status, 200, r.text);
          assert.equal(r.type, 'application/x-ndjson');
          const lines = r.text
            .trim()
            .split('\n')
            .map((l) => ProgressLine.parse(JSON.parse(l)));
          const last = lines.at(-1)!;
          assert.ok('result' in last, r.text);
          const digest = (last.result as { digest: string }).digest;
          assert.match(digest, /^sha256:[0-9a-f]{64}$/);
          assert.ok(lines.slice(0, -1).every((l) => 'progress' in l));

          const cli = await node.cli(['toolchain', 'build']);
          assert.equal(cli.code, 0, cli.stderr);
          assert.equal(cli.stdout, digest + '\n');
          assert.match(cli.stderr, /^toolchain \[#+\] 100% sha256:[0-9a-f]{64} \(cached\)/m);

          // Two at once are one build, and both get its result.
          const heard: ProgressReport[][] = [[], []];
          const both = await Promise.all(heard.map((h) => buildToolchain(client, { onProgress: (p) => h.push(p) })));
          assert.deepEqual(
            both.map((b) => b.digest),
            [digest, digest],
          );
          // The first hears it from its start; the second from when it joined (a cached build may be done by then).
          assert.ok(heard[0]!.length > 0, JSON.stringify(heard));
          assert.deepEqual(await toolchainStatus(client, digest), { digest, present: true, default: true });
          assert.deepEqual(await toolchainStatus(client, 'sha256:' + '1'.repeat(64)), {
            digest: 'sha256:' + '1'.repeat(64),
            present: false,
            default: false,
          });
          // A pull of what the node holds moves nothing.
          const again = await pullToolchain(client, digest, '127.0.0.1:1');
          assert.deepEqual(again, { digest, registry: '127.0.0.1:1', bytes: 0, reused: 0, via: null });
          const caches = await client.call('listCaches');
          assert.ok(Array.isArray(caches.caches));
        })(),
      ));

    it('refuses bad toolchain requests with an ordinary error answer, and a bad registry with its own one line', () =>
      track(
        (async () => {
          for (const [path, body] of [
            ['/v1/toolchain/pull', { digest: 'sha256:xyz', registry: '127.0.0.1:5000' }],
            ['/v1/toolchain/pull', { digest: 'sha256:' + '1'.repeat(64) }],
            ['/v1/toolchain/push', { registry: 'http://example.invalid/x' }],
            ['/v1/toolchain/build', { force: 'yes' }],
          ] as const) {
            const r = await raw(sock(), 'POST', path, body);
            assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${r.text}`);
            assert.equal(r.type, 'application/json');
            assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, 'invalid_request');
          }
          const status = await raw(sock(), 'GET', '/v1/toolchain?digest=latest');
          assert.equal(status.status, 400, status.text);

          const down = await node.cli(['toolchain', 'pull', 'sha256:' + '1'.repeat(64), '--registry', '127.0.0.1:1']);
          assert.equal(down.code, 9, down.stderr);
          assert.match(down.stderr, /^berth: the registry at 127\.0\.0\.1:1 is unreachable/m);
          const usage = await node.cli(['toolchain', 'pull', '--registry', '127.0.0.1:1']);
          assert.equal(usage.code, 2, usage.stderr);
          await assert.rejects(pullToolchain(client, 'latest', '127.0.0.1:1'), (e: unknown) => e instanceof InvalidRequestError);
        })(),
      ));

    it('runs `berth up` with the node as its child: the banner, a node that answers, and both gone on SIGTERM', () =>
      track(
        (async () => {
          const home = freshHome();
          const env = { ...process.env, BERTH_HOME: home, BERTH_ENGINE: engine, BERTH_NO_AUTOSTART: '1', BERTH_DASHBOARD: '127.0.0.1:0' };
          const up = spawn(process.execPath, [BERTH, 'up', '--no-demo', '--listen', '127.0.0.1:0'], {
            env,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          pids.push(up.pid!);
          let out = '';
          let err = '';
          up.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
          up.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
          const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
          await until(`the banner of berth up (stderr: ${err})`, () => /is up on .* and tcp:\/\/127\.0\.0\.1:\d+\./.test(out));
          assert.match(err, /berth: node [0-9a-f]+ listening on /);
          assert.match(err, /toolchain \[#+\] 100% sha256:/);
          const ls = await run(process.execPath, [BERTH, 'ls', '--json'], { env });
          assert.equal(ls.code, 0, ls.stderr);

          // A second node on the same home: the node's own one-line error, said once.
          const second = await run(process.execPath, [BERTH, 'up', '--no-demo'], { env, timeoutMs: 60_000 });
          assert.equal(second.code, 5, second.stderr);
          assert.equal(second.stderr.match(/already running/g)?.length, 1, second.stderr);

          up.kill('SIGTERM');
          assert.equal(await exited, 0, err);
          assert.ok(!existsSync(join(home, 'berth.sock')), 'the node stopped with berth up');
        })(),
      ));

    it('starts the local node when none answers, as a daemon of its own', () =>
      track(
        (async () => {
          const home = freshHome();
          const env: NodeJS.ProcessEnv = { ...process.env, BERTH_HOME: home, BERTH_ENGINE: engine, BERTH_DASHBOARD: '127.0.0.1:0' };
          delete env.BERTH_NO_AUTOSTART;
          const ls = await run(process.execPath, [BERTH, 'ls'], { env, timeoutMs: 60_000 });
          assert.equal(ls.code, 0, ls.stderr);
          const pid = Number(/started one \(pid (\d+)/.exec(ls.stderr)?.[1]);
          assert.ok(pid > 0, ls.stderr);
          pids.push(pid);
          const again = await run(process.execPath, [BERTH, 'ls'], { env });
          assert.equal(again.code, 0, again.stderr);
          assert.doesNotMatch(again.stderr, /started one/);
          process.kill(pid, 'SIGTERM');
          await until('the started node to stop', () => !alive(pid));
        })(),
      ));
  });
}
