// The TypeScript SDK (`import { Berth } from 'berth'`) against a real node: environments made,
// used and removed the way a program would, and the node's event stream as a subscriber sees it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  Berth,
  BerthError,
  ForbiddenError,
  NotFoundError,
  UnauthorizedError,
  UnavailableError,
  type BerthEvent,
  type CommandHandle,
} from '../../src/sdk/index.js';
import { BERTH, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';

/** Lines of a command's output as they come. */
async function* lines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let buf = '';
  for await (const c of chunks) {
    buf += c.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** The next line of a running command's output, bounded in time. */
async function nextLine(it: AsyncIterator<string>, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within 30 s`)), 30_000)));
  try {
    const r = await Promise.race([it.next(), late]);
    assert.equal(r.done, false, `the output ended before ${what}`);
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

/** A subscription to the node's events, read until what a test waits for has come (30 s at most). */
class Subscription {
  readonly seen: BerthEvent[] = [];
  private readonly stop = new AbortController();
  private readonly timer = setTimeout(() => this.stop.abort(), 30_000);
  private readonly it: AsyncIterator<BerthEvent>;

  constructor(berth: Berth, opts: { env?: string; since?: number }) {
    this.it = berth.events({ ...opts, signal: this.stop.signal })[Symbol.asyncIterator]();
  }

  /**
   * Live for certain: `prime` runs again and again until its first event comes through (a
   * stream without `since` starts at the next event, and a client cannot tell when that is).
   */
  async live(prime: () => Promise<unknown>): Promise<void> {
    let done = false;
    const first = this.next();
    const priming = (async () => {
      while (!done && !this.stop.signal.aborted) await prime();
    })();
    try {
      await first;
    } finally {
      done = true;
      await priming;
    }
  }

  /** Reads until `enough` holds of what was seen. */
  async until(enough: (seen: BerthEvent[]) => boolean): Promise<BerthEvent[]> {
    while (!enough(this.seen)) await this.next();
    return this.seen;
  }

  private async next(): Promise<void> {
    const r = await this.it.next();
    if (r.done) throw new Error(`the event stream ended (or 30 s passed) after ${JSON.stringify(this.seen.map((e) => e.type))}`);
    this.seen.push(r.value);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.it.return?.();
  }
}

for (const engine of testEngines()) {
  describe(`the SDK on ${engine}`, () => {
    const tracker = failureTracker();
    const track = tracker.track;
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let berth: Berth;
    let port = 0;
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      port = Number(/also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log())?.[1]);
      berth = await Berth.connect({ socketPath: join(node.home, 'berth.sock') });
    });
    after(async () => {
      berth?.close();
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });
    const names = async (): Promise<string[]> => (await node.json<Array<{ name: string }>>(['ls'])).map((e) => e.name);

    it('exec: exit code, output, stdin, a timeout and an abort', () =>
      track(
        (async () => {
          {
            await using env = await berth.create({ name: 'sdk-exec', repo: repo.path, agent: 'sdk' });
            assert.equal(env.info.state, 'running');
            const r = await env.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
            assert.equal(r.exitCode, 3);
            assert.equal(r.stdout, 'out\n');
            assert.equal(r.stderr, 'err\n');
            assert.equal(r.timedOut, false);
            assert.equal((await env.exec(['cat'], { stdin: 'from stdin' })).stdout, 'from stdin');
            assert.equal((await env.exec(['pwd'], { cwd: '/workspace/src' })).stdout, '/workspace/src\n');
            assert.equal((await env.exec(['sh', '-c', 'echo $GREETING'], { env: { GREETING: 'hi' } })).stdout, 'hi\n');

            const slow = await env.exec(['sleep', '30'], { timeoutMs: 300 });
            assert.equal(slow.exitCode, 124);
            assert.equal(slow.timedOut, true);

            const stop = new AbortController();
            const running = env.exec(['sh', '-c', 'echo $$ > /tmp/aborted.pid; exec sleep 30'], { signal: stop.signal });
            for (let i = 0; i < 300 && (await env.exec(['test', '-s', '/tmp/aborted.pid'])).exitCode !== 0; i++);
            stop.abort();
            await assert.rejects(running, (e: Error) => e.name === 'AbortError');
            // The command goes with the caller that asked for it.
            const pid = (await env.files.read('/tmp/aborted.pid')).trim();
            let alive = 0;
            for (let i = 0; i < 300; i++) {
              alive = (await env.exec(['kill', '-0', pid])).exitCode;
              if (alive !== 0) break;
            }
            assert.notEqual(alive, 0, 'the aborted command still runs');

            await assert.rejects(env.exec([]), (e: unknown) => e instanceof BerthError && e.code === 'usage');
            assert.deepEqual(await names(), ['sdk-exec']);
          }
          // `await using` removed it when its scope ended.
          assert.deepEqual(await names(), []);
        })(),
      ));

    it('spawn: output as it comes, stdin, end, kill and wait', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-spawn', repo: repo.path });
          const h: CommandHandle = env.spawn(['sh', '-c', 'echo ready; while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye']);
          const out = lines(h.stdout)[Symbol.asyncIterator]();
          assert.equal(await nextLine(out, 'ready'), 'ready');
          h.write('one\n');
          assert.equal(await nextLine(out, 'the first answer'), 'got one');
          h.write(Buffer.from('two\n'));
          assert.equal(await nextLine(out, 'the second answer'), 'got two');
          h.end();
          assert.equal(await nextLine(out, 'bye'), 'bye');
          assert.equal((await out.next()).done, true);
          const end = await h.wait();
          assert.equal(end.exitCode, 0);
          assert.equal(end.timedOut, false);
          const err: string[] = [];
          for await (const l of lines(h.stderr)) err.push(l);
          assert.deepEqual(err, ['err one', 'err two']);

          const sleeper = env.spawn(['sh', '-c', 'echo up; exec sleep 30']);
          assert.equal(await nextLine(lines(sleeper.stdout)[Symbol.asyncIterator](), 'up'), 'up');
          sleeper.kill();
          assert.equal((await sleeper.wait()).signal, 'SIGTERM');
          // A kill sent before the command is even up still ends it.
          const early = env.spawn(['sleep', '30']);
          early.kill('SIGKILL');
          assert.equal((await early.wait()).signal, 'SIGKILL');
          const hard = env.spawn(['sh', '-c', 'trap "" TERM; echo up; sleep 30']);
          assert.equal(await nextLine(lines(hard.stdout)[Symbol.asyncIterator](), 'up'), 'up');
          hard.kill('SIGKILL');
          assert.equal((await hard.wait()).signal, 'SIGKILL');

          const stop = new AbortController();
          const aborted = env.spawn(['sleep', '30'], { signal: stop.signal });
          stop.abort();
          assert.equal((await aborted.wait()).signal, 'SIGKILL');

          const limited = await env.spawn(['sleep', '30'], { timeoutMs: 200 }).wait();
          assert.equal(limited.exitCode, 124);
          assert.equal(limited.timedOut, true);
        })(),
      ));

    it('files: write, read, list; a missing file is a NotFoundError', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-files', repo: repo.path });
          const w = await env.files.write('notes/todo.txt', 'write the docs\n');
          assert.equal(w.bytes, 15);
          assert.equal(await env.files.read('notes/todo.txt'), 'write the docs\n');
          assert.equal(await env.files.read('/workspace/notes/todo.txt'), 'write the docs\n');
          const bytes = Buffer.from([0, 1, 2, 255]);
          await env.files.write('/tmp/bin.dat', bytes, { mode: 0o600 });
          assert.deepEqual(await env.files.readBytes('/tmp/bin.dat'), bytes);
          assert.equal((await env.exec(['stat', '-c', '%a', '/tmp/bin.dat'])).stdout, '600\n');
          const top = await env.files.list();
          for (const n of ['package.json', 'src', 'notes'])
            assert.ok(
              top.some((e) => e.name === n),
              `${n} in ${JSON.stringify(top)}`,
            );
          assert.equal(top.find((e) => e.name === 'src')?.type, 'dir');
          const notes = await env.files.list('notes');
          assert.deepEqual(
            notes.map((e) => [e.name, e.type, e.size]),
            [['todo.txt', 'file', 15]],
          );
          await assert.rejects(env.files.read('no/such/file'), (e: unknown) => {
            assert.ok(e instanceof NotFoundError, `a ${(e as Error).name}: ${(e as Error).message}`);
            assert.ok(e instanceof BerthError);
            assert.equal(e.code, 'not_found');
            return true;
          });
          await assert.rejects(env.files.list('/no/such/dir'), NotFoundError);
          await assert.rejects(berth.get('no-such-env'), NotFoundError);
        })(),
      ));

    it('services: a server started with an HTTP readiness check, verified', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-svc', repo: repo.path });
          const s = await env.services.start('web', { cmd: ['python3', '-m', 'http.server', '8000'], ready: 'http:8000/' });
          assert.equal(s.state, 'ready', JSON.stringify(s));
          assert.equal(typeof s.readyMs, 'number');
          assert.deepEqual(
            (await env.services.list()).map((x) => [x.name, x.state]),
            [['web', 'ready']],
          );
          const v = await env.verify({ http: 'http://localhost:8000/' });
          assert.equal(v.verified, true, JSON.stringify(v.failures));
          assert.equal(v.http[0]?.status, 200);
          assert.match(v.http[0]?.bodyExcerpt ?? '', /package\.json/);
          assert.deepEqual(
            v.services.map((x) => [x.name, x.ok]),
            [['web', true]],
          );
          const notThere = await env.verify({ http: 'http://localhost:8001/' });
          assert.equal(notThere.verified, false);
          assert.equal(notThere.failures.length, 1);
          const log = await env.services.logs('web');
          assert.match(log, /GET \/ HTTP/);
          assert.equal((await env.services.stop('web')).state, 'stopped');
          await assert.rejects(env.services.start('bad', { cmd: ['true'], ready: 'nonsense' }), (e: unknown) => {
            assert.ok(e instanceof BerthError && e.code === 'usage', String(e));
            return true;
          });
        })(),
      ));

    it('snapshot, fork, pause and resume; describe', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-snap', repo: repo.path });
          await env.files.write('work.txt', 'the work\n');
          const snap = await env.snapshot();
          assert.match(snap.id, /^sha256:[0-9a-f]{64}$/);
          await using fork = await berth.fork(snap, 'sdk-fork');
          assert.equal(await fork.files.read('work.txt'), 'the work\n');
          assert.equal(fork.info.commit, env.info.commit);
          await using byId = await berth.fork(snap.id, 'sdk-fork-2');
          assert.equal(await byId.files.read('work.txt'), 'the work\n');

          assert.equal((await env.pause()).state, 'paused');
          assert.equal(env.info.state, 'paused');
          assert.equal((await berth.get('sdk-snap')).info.state, 'paused');
          assert.equal((await env.resume()).state, 'running');
          assert.equal((await env.exec(['cat', 'work.txt'])).stdout, 'the work\n');
          const d = await env.describe();
          assert.equal(d.name, 'sdk-snap');
          assert.equal(d.commit, repo.main);
          assert.ok((await berth.list()).some((e) => e.name === 'sdk-fork'));
          assert.ok((await berth.snapshots()).some((s) => s.id === snap.id));
        })(),
      ));

    it('events: commands seen live, with growing ids; a reconnect from the last id misses nothing', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-events', repo: repo.path });
          const endedWith = (code: number) => (seen: BerthEvent[]) => seen.some((e) => e.type === 'command.ended' && e.exitCode === code);
          const sub = new Subscription(berth, { env: env.name });
          await sub.live(() => env.exec(['true']));
          await env.exec(['sh', '-c', 'exit 5']);
          const live = await sub.until(endedWith(5));
          await sub.close();
          const started = live.find((e) => e.type === 'command.started' && e.argv[2] === 'exit 5');
          const end = live.find((e) => e.type === 'command.ended' && e.exitCode === 5);
          assert.ok(started && started.type === 'command.started', JSON.stringify(live));
          assert.deepEqual(started.argv, ['sh', '-c', 'exit 5']);
          assert.equal(started.via, 'exec');
          assert.ok(end && end.type === 'command.ended');
          assert.equal(end.command, started.command);
          assert.equal(end.timedOut, false);
          assert.ok(end.id > started.id);
          for (const e of live) assert.equal(e.env, env.name);
          for (let i = 1; i < live.length; i++) assert.ok(live[i]!.id > live[i - 1]!.id, 'ids grow');

          // Stop listening, run more, and resume from the last id seen: the missed ones come first.
          const lastId = live[live.length - 1]!.id;
          await env.exec(['echo', 'missed-1']);
          await env.exec(['sh', '-c', 'exit 6']);
          const again = new Subscription(berth, { env: env.name, since: lastId });
          const missed = await again.until(endedWith(6));
          await again.close();
          assert.ok(missed.every((e) => e.id > lastId));
          assert.deepEqual(
            missed.filter((e) => e.type === 'command.started').map((e) => (e.type === 'command.started' ? e.argv : [])),
            [
              ['echo', 'missed-1'],
              ['sh', '-c', 'exit 6'],
            ],
          );
          for (let i = 1; i < missed.length; i++) assert.ok(missed[i]!.id > missed[i - 1]!.id, 'ids grow');

          // Another environment's events are not in a stream for this one; an unfiltered one has both.
          await using other = await berth.create({ name: 'sdk-events-2', repo: repo.path });
          await other.exec(['true']);
          await env.exec(['sh', '-c', 'exit 7']);
          const filtered = new Subscription(berth, { env: env.name, since: lastId });
          await filtered.until(endedWith(7));
          await filtered.close();
          assert.ok(filtered.seen.every((e) => e.env === env.name));
          const all = new Subscription(berth, { since: lastId });
          await all.until(endedWith(7));
          await all.close();
          assert.ok(all.seen.some((e) => e.env === 'sdk-events-2' && e.type === 'env.created'));
        })(),
      ));

    it('connect: the local node by BERTH_HOME, a node by URL and token, NODE/ENV by name', () =>
      track(
        (async () => {
          const saved = { home: process.env.BERTH_HOME, auto: process.env.BERTH_NO_AUTOSTART };
          process.env.BERTH_HOME = node.home;
          process.env.BERTH_NO_AUTOSTART = '1';
          try {
            using local = await Berth.connect();
            // A relative path is the program's, as on the command line (not the daemon's).
            const cwd = process.cwd();
            process.chdir(dirname(repo.path));
            const made = local.create({ name: 'sdk-conn', repo: `./${basename(repo.path)}`, agent: 'a1' });
            made.finally(() => process.chdir(cwd)).catch(() => undefined);
            await using env = await made;
            assert.equal(env.info.repo, repo.path);
            assert.equal(env.info.commit, repo.main);
            const token = readFileSync(join(node.home, 'token'), 'utf8').trim();
            using remote = await Berth.connect({ url: `tcp://127.0.0.1:${port}`, token });
            assert.equal((await (await remote.get(env.name)).exec(['echo', 'over tcp'])).stdout, 'over tcp\n');
            // NODE/ENV: a node added with `berth node add` (here this same node, over TCP).
            const added = await node.cli(['node', 'add', 'self', `tcp://127.0.0.1:${port}`, '--token-file', join(node.home, 'token')]);
            assert.equal(added.code, 0, added.stderr);
            const far = await local.get('self/sdk-conn');
            assert.equal(far.name, 'sdk-conn');
            assert.equal((await far.exec(['echo', 'by name'])).stdout, 'by name\n');
            await assert.rejects(local.get('nowhere/sdk-conn'), NotFoundError);
            await assert.rejects(
              Berth.connect({ url: `http://127.0.0.1:${port}`, token: 'berth_0123456789abcdef_' + 'x'.repeat(32) }),
              UnauthorizedError,
            );
            // No node there: an UnavailableError, whichever way it is reached.
            await assert.rejects(Berth.connect({ socketPath: join(node.home, 'no-such.sock') }), UnavailableError);
            await assert.rejects(Berth.connect({ url: 'http://127.0.0.1:1' }), UnavailableError);
            // An agent's token reaches that agent's environments only.
            const a2 = await local.tokens.create({ agent: 'a2' });
            using asA2 = await Berth.connect({ url: `http://127.0.0.1:${port}`, token: a2.token });
            await assert.rejects(asA2.get('sdk-conn'), NotFoundError);
            assert.deepEqual(await asA2.list(), []);
            const a1 = await local.tokens.create({ agent: 'a1', readOnly: true });
            using asA1 = await Berth.connect({ url: `http://127.0.0.1:${port}`, token: a1.token });
            assert.deepEqual(
              (await asA1.list()).map((e) => e.name),
              ['sdk-conn'],
            );
            await assert.rejects((await asA1.get('sdk-conn')).exec(['true']), ForbiddenError);
            assert.ok((await local.tokens.list()).some((t) => t.id === a1.id && t.readOnly));
            await local.tokens.remove(a1.id);
            await assert.rejects(asA1.list(), UnauthorizedError);
          } finally {
            for (const [k, v] of [
              ['BERTH_HOME', saved.home],
              ['BERTH_NO_AUTOSTART', saved.auto],
            ] as const) {
              if (v === undefined) delete process.env[k];
              else process.env[k] = v;
            }
          }
        })(),
      ));

    it('`berth events`: the same stream on the command line; a reader that goes away ends it quietly', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-cli-events', repo: repo.path });
          await env.exec(['sh', '-c', 'exit 3']);
          const child = spawn(process.execPath, [BERTH, 'events', '--env', env.name, '--since', '0', '--json'], {
            env: node.env,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stderr = '';
          child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
          const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
          // Its first lines, then the reader goes (as `| head -1` does), and more events come.
          const first = await new Promise<string>((resolve) => child.stdout.once('data', (c: Buffer) => resolve(c.toString())));
          const e = JSON.parse(first.split('\n')[0]!) as BerthEvent;
          assert.equal(e.type, 'env.created');
          child.stdout.destroy();
          let code: number | null | undefined;
          void exited.then((c) => (code = c));
          for (let i = 0; i < 200 && code === undefined; i++) await env.exec(['true']);
          assert.equal(await exited, 0, stderr);
          assert.equal(stderr, '');
        })(),
      ));

    it('events: a subscriber carries on across a daemon restart, missing nothing', () =>
      track(
        (async () => {
          await using env = await berth.create({ name: 'sdk-restart', repo: repo.path });
          const sub = new Subscription(berth, { env: env.name });
          await sub.live(() => env.exec(['true']));
          // The subscriber waits for the next event all through the restart, as a program's loop would.
          const waiting = sub.until((s) => s.some((e) => e.type === 'command.ended' && e.exitCode === 9));
          waiting.catch(() => {});
          await node.killDaemon('SIGTERM');
          await node.startDaemonWith(['--listen', '127.0.0.1:0']);
          await env.exec(['sh', '-c', 'exit 9']);
          const seen = await waiting;
          await sub.close();
          assert.ok(seen.some((e) => e.type === 'command.started' && e.argv[2] === 'exit 9'));
          for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.id > seen[i - 1]!.id, 'ids grow');
        })(),
      ));
  });
}
