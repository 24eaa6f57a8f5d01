// Forks carry the whole workspace on every storage: tracked changes, untracked files and
// ignored ones (node_modules, build output), on copy-on-write storage the node sets up itself
// and on the whole-copy path; a node that moves from one to the other keeps every snapshot;
// several forks at once are all made or none; a daemon killed mid-fork leaves none half-made.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeRepo, NodeFixture, testEngines, failureTracker } from '../helpers/fixture.js';
import type { EnvInfo, NodeInfo, SnapshotInfo } from '../../src/core/api.js';
import { Berth } from '../../src/sdk/index.js';
import { join } from 'node:path';

// What `npm install` and a build leave behind, made by the test: packages with a bin link, a
// package that needs its dependency, a large file, and build output, all ignored by git.
const INSTALL = [
  "printf 'node_modules\\ndist\\n' > .gitignore",
  'for p in $(seq 1 40); do mkdir -p node_modules/pkg$p/lib; for f in $(seq 1 25); do echo "module.exports = $p * $f;" > node_modules/pkg$p/lib/f$f.js; done; echo "{\\"name\\":\\"pkg$p\\"}" > node_modules/pkg$p/package.json; done',
  'mkdir -p node_modules/.bin && printf "#!/bin/sh\\necho tool ran\\n" > node_modules/pkg1/tool.sh && chmod +x node_modules/pkg1/tool.sh && ln -s ../pkg1/tool.sh node_modules/.bin/tool',
  'head -c 8000000 /dev/urandom > node_modules/pkg2/big.bin',
  'mkdir -p dist && echo built > dist/app.js',
  'echo edit >> src/index.js && echo note > untracked.txt',
].join(' && ');

/** Everything a fork must carry, as one line per fact. */
const WHOLE =
  'find node_modules dist -type f | sort | xargs sha256sum | sha256sum; find node_modules | wc -l; node_modules/.bin/tool; readlink node_modules/.bin/tool; cat dist/app.js untracked.txt; tail -1 src/index.js; git status --short | sort';

for (const engine of testEngines()) {
  describe(`whole forks on ${engine}`, () => {
    const tracker = failureTracker();
    const track = tracker.track;
    let repo: ReturnType<typeof makeRepo>;
    let cow: NodeFixture;
    let copy: NodeFixture;
    before(async () => {
      repo = makeRepo();
      [cow, copy] = await Promise.all([
        NodeFixture.start(engine, { BERTH_STORAGE_GB: '4' }),
        NodeFixture.start(engine, { BERTH_STORAGE: 'copy' }),
      ]);
    });
    after(async () => {
      await Promise.all([cow?.stop(tracker.failed), copy?.stop(tracker.failed)]);
      repo?.cleanup();
    });

    it('sets up copy-on-write storage by itself, and forks carry everything, three at once', () =>
      track(
        (async () => {
          const info = await cow.json<NodeInfo>(['node', 'info']);
          assert.equal(info.storage?.kind, 'btrfs', JSON.stringify(info.storage));
          assert.match((await cow.cli(['node', 'info'])).stdout, /copy-on-write \(btrfs\)/);
          await cow.json(['new', 'ex1', '--repo', repo.path]);
          const r = await cow.cli(['exec', 'ex1', '--', 'sh', '-c', INSTALL]);
          assert.equal(r.code, 0, r.stderr);
          const want = (await cow.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout;
          assert.match(want, /tool ran/);
          const s = await cow.json<SnapshotInfo>(['snap', 'ex1']);
          assert.ok(s.bytes < 10_000, 'the manifest holds only the diff; the tree holds the rest');
          const forks = await cow.json<EnvInfo[]>(['fork', s.id.slice(0, 19), 'try-a', 'try-b', 'try-c']);
          assert.deepEqual(
            forks.map((f) => f.name),
            ['try-a', 'try-b', 'try-c'],
          );
          for (const f of forks) {
            assert.equal(f.storage, 'btrfs');
            assert.equal(f.origin.snapshot, s.id);
            assert.equal((await cow.cli(['exec', f.name, '--', 'sh', '-c', WHOLE])).stdout, want, `${f.name} is not whole`);
            assert.equal((await cow.cli(['exec', f.name, '--', 'git', 'branch', '--show-current'])).stdout.trim(), `berth/${f.name}`);
          }
          // Forks are independent: a change in one is in no other, nor in the parent.
          await cow.cli(['exec', 'try-a', '--', 'sh', '-c', 'rm -rf node_modules/pkg3 && echo a > dist/app.js']);
          assert.equal((await cow.cli(['exec', 'try-b', '--', 'sh', '-c', WHOLE])).stdout, want);
          assert.equal((await cow.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout, want);
          const d = await cow.json<EnvInfo>(['describe', 'try-b']);
          assert.equal(d.storage, 'btrfs');
        })(),
      ));

    it('makes all of several forks or none, and a name given twice is refused', () =>
      track(
        (async () => {
          const s = (await cow.json<SnapshotInfo[]>(['snapshots'])).find((x) => x.env === 'ex1')!;
          const before = cow.containers().length;
          const clash = await cow.cli(['fork', s.id, 'new-1', 'try-a', 'new-2']);
          assert.equal(clash.code, 5, clash.stderr);
          assert.match(clash.stderr, /try-a already exists/);
          assert.equal(clash.stderr.trim().split('\n').length, 1, 'one line');
          for (const n of ['new-1', 'new-2']) assert.equal((await cow.cli(['describe', n])).code, 4, `${n} was left behind`);
          assert.equal(cow.containers().length, before);
          const twice = await cow.cli(['fork', s.id, 'dup', 'dup']);
          assert.equal(twice.code, 2, twice.stderr);
          assert.equal((await cow.cli(['describe', 'dup'])).code, 4);
          const none = await cow.cli(['fork', s.id]);
          assert.equal(none.code, 2);
        })(),
      ));

    it('forks several at once through the SDK, all or none', () =>
      track(
        (async () => {
          const berth = await Berth.connect({ socketPath: join(cow.home, 'berth.sock') });
          try {
            const s = (await berth.snapshots()).find((x) => x.env === 'ex1')!;
            const envs = await berth.forkMany(s, ['sdk-1', 'sdk-2']);
            assert.deepEqual(
              envs.map((e) => e.name),
              ['sdk-1', 'sdk-2'],
            );
            assert.match((await cow.cli(['exec', 'sdk-2', '--', 'node_modules/.bin/tool'])).stdout, /tool ran/);
            await assert.rejects(berth.forkMany(s, ['sdk-3', 'sdk-1']), /already exists/);
            assert.equal((await cow.cli(['describe', 'sdk-3'])).code, 4, 'sdk-3 was left behind');
            await cow.cli(['rm', '--discard', 'sdk-1', 'sdk-2']);
          } finally {
            berth.close();
          }
        })(),
      ));

    it('leaves no fork half-made when the daemon is killed during a fork of three', () =>
      track(
        (async () => {
          const s = (await cow.json<SnapshotInfo[]>(['snapshots'])).find((x) => x.env === 'ex1')!;
          const want = (await cow.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout;
          const names = ['k-1', 'k-2', 'k-3'];
          for (const point of ['create:after-row', 'create:after-container']) {
            const before = cow.containers().length;
            await cow.killDaemon('SIGTERM');
            await cow.startDaemon({ BERTH_FAILPOINTS: point });
            const pending = cow.cli(['fork', s.id, ...names]);
            for (let i = 0; i < 400 && !cow.log().includes(`failpoint ${point} reached`); i++) await sleep(25);
            await cow.killDaemon('SIGKILL');
            assert.notEqual((await pending).code, 0, point);
            await cow.startDaemon();
            for (const n of names) assert.equal((await cow.cli(['describe', n])).code, 4, `${point}: ${n} half-made`);
            assert.equal(cow.containers().length, before, `${point}: a container was left`);
            assert.equal((await cow.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout, want, `${point}: the parent changed`);
          }
          // And the same fork, asked again, is whole.
          const again = await cow.json<EnvInfo[]>(['fork', s.id, ...names]);
          assert.equal(again.length, 3);
          assert.equal((await cow.cli(['exec', 'k-3', '--', 'sh', '-c', WHOLE])).stdout, want);
          await cow.cli(['rm', '--discard', ...names]);
        })(),
      ));

    it('forks whole on the copy path, and the node keeps every snapshot when it moves to copy-on-write', () =>
      track(
        (async () => {
          const info = await copy.json<NodeInfo>(['node', 'info']);
          assert.equal(info.storage?.kind, 'copy');
          assert.match(info.storage?.reason ?? '', /BERTH_STORAGE=copy/);
          await copy.json(['new', 'ex1', '--repo', repo.path]);
          assert.equal((await copy.cli(['exec', 'ex1', '--', 'sh', '-c', INSTALL])).code, 0);
          const want = (await copy.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout;
          const s = await copy.json<SnapshotInfo>(['snap', 'ex1']);
          const forks = await copy.json<EnvInfo[]>(['fork', s.id, 'c-1', 'c-2']);
          for (const f of forks) {
            assert.equal(f.storage, 'copy');
            assert.equal((await copy.cli(['exec', f.name, '--', 'sh', '-c', WHOLE])).stdout, want, `${f.name} is not whole`);
          }
          // A second snapshot after more work: a tree of its own.
          await copy.cli(['exec', 'ex1', '--', 'sh', '-c', 'echo more > dist/more.js && echo again >> src/index.js']);
          const want2 = (await copy.cli(['exec', 'ex1', '--', 'sh', '-c', WHOLE])).stdout;
          const s2 = await copy.json<SnapshotInfo>(['snap', 'ex1']);
          await copy.cli(['rm', '--discard', 'c-1', 'c-2']);

          // The same home, started without BERTH_STORAGE: the node sets up copy-on-write and
          // brings the old trees with it.
          await copy.killDaemon('SIGTERM');
          await copy.startDaemon({ BERTH_STORAGE: '', BERTH_STORAGE_GB: '4' });
          const moved = await copy.json<NodeInfo>(['node', 'info']);
          assert.equal(moved.storage?.kind, 'btrfs');
          const ids = (await copy.json<SnapshotInfo[]>(['snapshots'])).map((x) => x.id);
          for (const id of [s.id, s2.id]) assert.ok(ids.includes(id), `snapshot ${id} was lost`);
          await copy.json(['fork', s.id, 'm-1']);
          await copy.json(['fork', s2.id, 'm-2']);
          assert.equal((await copy.cli(['exec', 'm-1', '--', 'sh', '-c', WHOLE])).stdout, want);
          assert.equal((await copy.cli(['exec', 'm-2', '--', 'sh', '-c', WHOLE])).stdout, want2);
          assert.equal((await copy.json<EnvInfo>(['describe', 'm-2'])).storage, 'btrfs');
          // The environment made before the move keeps working, and its snapshots fork whole.
          assert.equal((await copy.json<EnvInfo>(['describe', 'ex1'])).storage, 'copy');
          await copy.cli(['exec', 'ex1', '--', 'sh', '-c', 'echo after-move > after.txt']);
          const s3 = await copy.json<SnapshotInfo>(['snap', 'ex1']);
          await copy.json(['fork', s3.id, 'm-3']);
          assert.match((await copy.cli(['exec', 'm-3', '--', 'sh', '-c', WHOLE + '; cat after.txt'])).stdout, /tool ran[\s\S]*after-move/);
          await copy.cli(['rm', '--discard', 'm-1', 'm-2', 'm-3']);
        })(),
      ));
  });
}
