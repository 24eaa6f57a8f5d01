// Instant switching: identity, snapshots (both storage paths), fork, restore, pause/resume,
// pools, caches and lifetimes, with the faults around them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { engineRun, makeRepo, NodeFixture, testEngines, failureTracker } from '../helpers/fixture.js';
import type { EnvInfo, IdentityInfo, PoolInfo, SnapshotInfo } from '../../src/core/api.js';

function git(repo: string, ...args: string[]): string {
  return execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { encoding: 'utf8' }).trim();
}

const CHANGES = [
  'echo changed >> src/index.js',
  'echo fresh > added.txt',
  'rm app.test.js',
  'printf "#!/bin/sh\\necho hi\\n" > run.sh && chmod +x run.sh',
  'ln -s src/index.js link.js',
  'mkdir -p dist && echo built > dist/bundle.js',
  'echo dist > .gitignore',
].join(' && ');

/** What a workspace holds, as a user would check it. */
const STATE =
  'git status --short | sort; cat src/index.js; cat added.txt; ls -l run.sh | cut -c1-10; readlink link.js; cat dist/bundle.js 2>/dev/null || echo no-dist';

const engines = testEngines();
const first = engines[0]!;

describe(`snapshots, identity and faults on ${first}`, () => {
  let node: NodeFixture;
  let repo: ReturnType<typeof makeRepo>;
  const tracker = failureTracker();
  const track = tracker.track;
  before(async () => {
    repo = makeRepo();
    node = await NodeFixture.start(first, { BERTH_REAP_INTERVAL_MS: '300', BERTH_GC_GRACE_MS: '0' });
    await node.json(['new', 'src', '--repo', repo.path, '--agent', 'a1']);
    const r = await node.cli(['exec', 'src', '--', 'sh', '-c', CHANGES]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await node?.stop(tracker.failed);
    repo?.cleanup();
  });

  it('snapshots the diff and artifacts, dedupes, and forks to the same workspace', () =>
    track(
      (async () => {
        const before = (await node.cli(['exec', 'src', '--', 'sh', '-c', STATE])).stdout;
        const s = await node.json<SnapshotInfo>(['snap', 'src', '--artifact', 'dist']);
        assert.match(s.id, /^sha256:[0-9a-f]{64}$/);
        assert.equal(s.base, repo.main);
        assert.ok(s.files >= 6);
        const again = await node.json<SnapshotInfo>(['snap', 'src', '--artifact', 'dist']);
        assert.equal(again.id, s.id, 'the same state must give the same snapshot');
        assert.equal(again.newBlobs, 0, 'nothing new to store');

        const fork = await node.json<EnvInfo>(['fork', s.id.slice(0, 19), 'forked']);
        assert.equal(fork.origin.snapshot, s.id);
        assert.equal(fork.commit, repo.main);
        const after = (await node.cli(['exec', 'forked', '--', 'sh', '-c', STATE])).stdout;
        assert.equal(after, before);
        assert.equal((await node.cli(['exec', 'forked', '--', 'git', 'branch', '--show-current'])).stdout.trim(), 'berth/forked');
        assert.equal((await node.cli(['exec', 'forked', '--', './run.sh'])).stdout, 'hi\n');

        // Without --artifact, the ignored build output is not in the manifest (what moves
        // between nodes), and a fork on this node still carries it, from the snapshot's tree.
        const plain = await node.json<SnapshotInfo>(['snap', 'src']);
        assert.notEqual(plain.id, s.id);
        await node.json(['fork', plain.id, 'no-artifacts']);
        assert.equal((await node.cli(['exec', 'no-artifacts', '--', 'sh', '-c', STATE])).stdout, before);
        await node.cli(['rm', '--discard', 'forked', 'no-artifacts']);
      })(),
    ));

  it('has an identity that recreates the environment anywhere', () =>
    track(
      (async () => {
        const id = await node.json<IdentityInfo>(['id', 'src']);
        assert.equal(id.ref, repo.main);
        assert.match(id.toolchain, /^sha256:/);
        assert.equal((await node.json<IdentityInfo>(['id', 'src'])).hash, id.hash, 'stable');
        const pinned = await node.json<IdentityInfo>(['id', 'src', '--snap']);
        assert.match(pinned.snapshot ?? '', /^sha256:/);
        assert.notEqual(pinned.hash, id.hash);
        const file = join(node.home, 'identity.txt');
        writeFileSync(file, pinned.short);
        const env = await node.json<EnvInfo>(['new', 'again', '--identity', file]);
        assert.equal(env.commit, repo.main);
        assert.equal(env.toolchain, id.toolchain);
        assert.equal(env.identity.snapshot, pinned.snapshot);
        assert.match((await node.cli(['exec', 'again', '--', 'cat', 'added.txt'])).stdout, /fresh/);
        const bad = await node.cli(['new', 'bad', '--identity', 'berth1.bm9wZQ']);
        assert.equal(bad.code, 15);
        await node.cli(['rm', '--discard', 'again']);
      })(),
    ));

  it('restores an environment to a snapshot', () =>
    track(
      (async () => {
        const s = await node.json<SnapshotInfo>(['snap', 'src', '--artifact', 'dist']);
        const before = (await node.cli(['exec', 'src', '--', 'sh', '-c', STATE])).stdout;
        await node.cli(['exec', 'src', '--', 'sh', '-c', 'rm -f added.txt run.sh; echo other > other.txt; echo x > src/index.js']);
        const r = await node.cli(['restore', 'src', s.id]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((await node.cli(['exec', 'src', '--', 'sh', '-c', STATE])).stdout, before);
        assert.equal((await node.cli(['exec', 'src', '--', 'test', '-e', 'other.txt'])).code, 1);
      })(),
    ));

  it('refuses unknown and corrupt snapshots, leaving nothing half-made', () =>
    track(
      (async () => {
        const unknown = await node.cli(['fork', 'sha256:' + 'f'.repeat(64), 'x1']);
        assert.equal(unknown.code, 19);
        const s = await node.json<SnapshotInfo>(['snap', 'src']);
        // Corrupt one content blob on disk.
        const blobs = join(node.home, 'store', 'blobs');
        const victim = readdirSync(blobs)
          .flatMap((d) => readdirSync(join(blobs, d)).map((f) => join(blobs, d, f)))
          .find((p) => !p.endsWith(s.id.slice(7)))!;
        appendFileSync(victim, 'tampered');
        const before = node.containers().length;
        const r = await node.cli(['fork', s.id, 'x2']);
        assert.equal(r.code, 19, r.stderr);
        assert.match(r.stderr, /corrupt/);
        assert.equal(node.containers().length, before);
        assert.equal((await node.cli(['describe', 'x2'])).code, 4);
        // The snapshot itself is still listed: nothing referenced was deleted.
        assert.ok((await node.json<SnapshotInfo[]>(['snapshots'])).some((x) => x.id === s.id));
        execFileSync('sh', ['-c', `truncate -s -8 ${victim}`]);
      })(),
    ));

  it('keeps the store consistent when the daemon is killed during snap, fork or claim', () =>
    track(
      (async () => {
        const count = async (): Promise<number> => (await node.json<SnapshotInfo[]>(['snapshots'])).length;
        await node.cli(['exec', 'src', '--', 'sh', '-c', 'echo crash-test > crash.txt']);
        const n = await count();
        const cases: Array<[string, string[]]> = [
          ['snap:before-record', ['snap', 'src']],
          ['create:after-row', ['fork', (await node.json<SnapshotInfo[]>(['snapshots']))[0]!.id, 'crashfork']],
          ['create:after-container', ['fork', (await node.json<SnapshotInfo[]>(['snapshots']))[0]!.id, 'crashfork']],
        ];
        for (const [point, args] of cases) {
          await node.killDaemon('SIGTERM');
          await node.startDaemon({ BERTH_FAILPOINTS: point, BERTH_REAP_INTERVAL_MS: '300' });
          const pending = node.cli(args);
          for (let i = 0; i < 400 && !node.log().includes(`failpoint ${point} reached`); i++) await sleep(25);
          await node.killDaemon('SIGKILL');
          assert.equal((await pending).code, 11, point);
          await node.startDaemon({ BERTH_REAP_INTERVAL_MS: '300' });
          assert.equal(await count(), n, `${point}: a half-made snapshot became visible`);
          assert.equal((await node.cli(['describe', 'crashfork'])).code, 4, point);
        }
        const gc = await node.json<{ removed: number }>(['gc']);
        assert.ok(gc.removed >= 1, 'the interrupted snapshot left unreferenced blobs for gc');
        // Every recorded snapshot still forks.
        for (const s of await node.json<SnapshotInfo[]>(['snapshots'])) {
          const f = await node.cli(['fork', s.id, 'check']);
          assert.equal(f.code, 0, `${s.id}: ${f.stderr}`);
          await node.cli(['rm', '--discard', 'check']);
        }
      })(),
    ));

  it('snapshots an environment whose container vanished, and rm keeps its work', () =>
    track(
      (async () => {
        await node.json(['new', 'doomed', '--repo', repo.path]);
        await node.cli(['exec', 'doomed', '--', 'sh', '-c', 'echo precious > work.txt']);
        const env = await node.json<EnvInfo>(['describe', 'doomed']);
        engineRun(first, ['rm', '-f', env.containerId!], { ignoreOutput: true });
        const s = await node.cli(['snap', 'doomed', '--json']);
        assert.equal(s.code, 0, s.stderr);
        const rm = await node.json<{ snapshots: Record<string, string> }>(['rm', 'doomed']);
        const kept = rm.snapshots.doomed!;
        await node.json(['fork', kept, 'reborn']);
        assert.equal((await node.cli(['exec', 'reborn', '--', 'cat', 'work.txt'])).stdout, 'precious\n');
        const discard = await node.json<{ snapshots: Record<string, string | null> }>(['rm', 'reborn', '--discard']);
        assert.equal(discard.snapshots.reborn, null);
      })(),
    ));

  it('expires idle environments after snapshotting them', () =>
    track(
      (async () => {
        await node.json(['new', 'idle', '--repo', repo.path, '--idle-ttl', '2s']);
        await node.cli(['exec', 'idle', '--', 'sh', '-c', 'echo last-words > note.txt']);
        let gone = false;
        for (let i = 0; i < 60 && !gone; i++) {
          await sleep(250);
          gone = (await node.cli(['describe', 'idle'])).code === 4;
        }
        assert.ok(gone, 'the idle environment was not expired');
        const s = (await node.json<SnapshotInfo[]>(['snapshots'])).find((x) => x.env === 'idle' && x.reason === 'idle');
        assert.ok(s, 'no snapshot was taken before expiry');
        await node.json(['fork', s.id, 'after-idle']);
        assert.equal((await node.cli(['exec', 'after-idle', '--', 'cat', 'note.txt'])).stdout, 'last-words\n');
        await node.cli(['rm', '--discard', 'after-idle']);
      })(),
    ));

  it('fails a snapshot cleanly when the disk is full', () =>
    track(
      (async () => {
        const tight = join(node.home, 'store');
        // A 1 MiB file system over a fresh store: the next snapshot cannot fit.
        const hold = join(node.home, 'store-before');
        execFileSync('mv', [tight, hold]);
        mkdirSync(tight);
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tight]);
        try {
          mkdirSync(join(tight, 'blobs'));
          mkdirSync(join(tight, 'tmp'));
          await node.killDaemon('SIGTERM');
          await node.startDaemon({ BERTH_REAP_INTERVAL_MS: '300' });
          const n = (await node.json<SnapshotInfo[]>(['snapshots'])).length;
          await node.cli(['exec', 'src', '--', 'sh', '-c', 'head -c 3000000 /dev/urandom > big.bin']);
          const r = await node.cli(['snap', 'src']);
          assert.equal(r.code, 20, r.stderr);
          assert.match(r.stderr, /out of disk space/);
          assert.equal((await node.json<SnapshotInfo[]>(['snapshots'])).length, n);
          assert.deepEqual(readdirSync(join(tight, 'tmp')), [], 'a partial file was left behind');
          const rm = await node.cli(['rm', 'src']);
          assert.equal(rm.code, 20, 'rm must not lose work when its snapshot fails');
          assert.equal((await node.cli(['describe', 'src'])).code, 0);
        } finally {
          await node.killDaemon('SIGTERM');
          spawnSync('umount', [tight]);
          execFileSync('rm', ['-rf', tight]);
          execFileSync('mv', [hold, tight]);
          await node.startDaemon({ BERTH_REAP_INTERVAL_MS: '300' });
          await node.cli(['exec', 'src', '--', 'rm', '-f', 'big.bin']);
        }
      })(),
    ));
});

for (const engine of engines) {
  describe(`pause, pools and caches on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;
    before(async () => {
      repo = makeRepo();
      writeFileSync(
        join(repo.path, 'package-lock.json'),
        JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages: { '': { name: 'app' } } }),
      );
      git(repo.path, 'add', '-A');
      git(repo.path, 'commit', '-q', '-m', 'lockfile');
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('pauses and resumes with processes and their memory intact', () =>
      track(
        (async () => {
          await node.json(['new', 'frozen', '--repo', repo.path]);
          await node.cli([
            'service',
            'start',
            'frozen',
            'counter',
            '--',
            'sh',
            '-c',
            'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done',
          ]);
          const pid = (await node.json<Array<{ pid: number }>>(['service', 'ls', 'frozen']))[0]!.pid;
          assert.equal((await node.json<EnvInfo>(['pause', 'frozen'])).state, 'paused');
          assert.equal((await node.json<EnvInfo[]>(['ls'])).find((e) => e.name === 'frozen')?.state, 'paused');
          const refused = await node.cli(['exec', 'frozen', '--', 'true']);
          assert.equal(refused.code, 12);
          assert.match(refused.stderr, /paused.*berth resume frozen/);
          await node.cli(['resume', 'frozen']);
          const a = Number((await node.cli(['exec', 'frozen', '--', 'cat', '/tmp/count'])).stdout);
          await sleep(300);
          const b = Number((await node.cli(['exec', 'frozen', '--', 'cat', '/tmp/count'])).stdout);
          assert.ok(b > a, 'the counter runs again after resume');
          assert.equal(
            (await node.json<Array<{ pid: number }>>(['service', 'ls', 'frozen']))[0]!.pid,
            pid,
            'the same process, not a restart',
          );
          await node.cli(['pause', 'frozen']);
          const auto = await node.cli(['exec', 'frozen', '--resume', '--', 'echo', 'woke']);
          assert.equal(auto.stdout, 'woke\n');
          await node.cli(['rm', '--discard', 'frozen']);
        })(),
      ));

    it('shares a cache volume between environments with the same lockfile', () =>
      track(
        (async () => {
          const a = await node.json<EnvInfo>(['new', 'cache-a', '--repo', repo.path, '--no-pool']);
          assert.match(a.cacheKeys.npm ?? '', /^[0-9a-f]{16}$/);
          // A real package into the npm cache through the network (and the node's CA)...
          const fill = await node.cli([
            'exec',
            'cache-a',
            '--timeout',
            '120',
            '--',
            'sh',
            '-c',
            'cd /tmp && npm pack is-number@7.0.0 --silent',
          ]);
          assert.equal(fill.code, 0, fill.stderr);
          const b = await node.json<EnvInfo>(['new', 'cache-b', '--repo', repo.path, '--no-pool', '--network', 'none']);
          assert.deepEqual(b.cacheKeys, a.cacheKeys);
          // ...is there for the second environment, which has no network at all.
          const offline = await node.cli([
            'exec',
            'cache-b',
            '--timeout',
            '60',
            '--',
            'sh',
            '-c',
            'cd /tmp && npm pack is-number@7.0.0 --offline --silent',
          ]);
          assert.equal(offline.code, 0, offline.stderr);
          assert.match(offline.stdout, /is-number-7\.0\.0\.tgz/);
          await node.cli(['rm', '--discard', 'cache-a', 'cache-b']);
        })(),
      ));

    it('keeps a pool warm, hands out distinct environments to concurrent claims, and survives a restart', () =>
      track(
        (async () => {
          const pool = await node.json<PoolInfo>(['pool', 'set', '--repo', repo.path, '--ref', 'main', '--size', '2']);
          assert.equal(pool.size, 2);
          const warm = async (n: number): Promise<void> => {
            for (let i = 0; i < 200; i++) {
              if ((await node.json<PoolInfo[]>(['pool', 'ls']))[0]?.warm === n) return;
              await sleep(100);
            }
            assert.fail(`the pool never reached ${n} warm environments`);
          };
          await warm(2);
          const [c1, c2] = await Promise.all([
            node.json<EnvInfo>(['new', 'claim-1', '--repo', repo.path, '--ref', 'main']),
            node.json<EnvInfo>(['new', 'claim-2', '--repo', repo.path, '--ref', 'main']),
          ]);
          assert.ok(c1.origin.pool && c2.origin.pool, 'both came from the pool');
          assert.notEqual(c1.id, c2.id);
          assert.notEqual(c1.containerId, c2.containerId);
          for (const n of ['claim-1', 'claim-2']) {
            assert.equal((await node.cli(['exec', n, '--', 'git', 'branch', '--show-current'])).stdout.trim(), `berth/${n}`);
          }
          assert.deepEqual((await node.json<EnvInfo[]>(['ls'])).map((e) => e.name).sort(), ['claim-1', 'claim-2']);
          await warm(2);
          await node.killDaemon('SIGKILL');
          await node.startDaemon();
          assert.equal((await node.json<PoolInfo[]>(['pool', 'ls']))[0]?.warm, 2, 'the pool survived the restart');
          // A daemon killed in the middle of a claim: the claim either happened whole or not at all.
          await node.killDaemon('SIGTERM');
          await node.startDaemon({ BERTH_FAILPOINTS: 'claim:after-claim' });
          const pending = node.cli(['new', 'crashclaim', '--repo', repo.path, '--ref', 'main']);
          for (let i = 0; i < 400 && !node.log().includes('failpoint claim:after-claim reached'); i++) await sleep(25);
          await node.killDaemon('SIGKILL');
          assert.equal((await pending).code, 11);
          await node.startDaemon();
          const claimed = (await node.json<EnvInfo[]>(['ls'])).find((e) => e.name === 'crashclaim');
          assert.ok(claimed, 'the committed claim is there after the restart');
          assert.equal(claimed.state, 'running');
          assert.equal((await node.cli(['exec', 'crashclaim', '--', 'echo', 'ok'])).stdout, 'ok\n');
          await warm(2);
          await node.cli(['rm', '--discard', 'crashclaim']);
          const custom = await node.json<EnvInfo>(['new', 'custom', '--repo', repo.path, '--ref', 'main', '--memory', '512']);
          assert.equal(custom.origin.pool, false, 'a customized environment is made fresh');
          await node.json(['pool', 'set', '--repo', repo.path, '--ref', 'main', '--size', '0']);
          for (let i = 0; i < 100 && node.containers().length > 3; i++) await sleep(100);
          assert.equal(node.containers().length, 3, 'the emptied pool removed its members');
          await node.cli(['rm', '--discard', 'claim-1', 'claim-2', 'custom']);
        })(),
      ));
  });
}

describe('copy-on-write snapshots on btrfs', () => {
  let node: NodeFixture;
  let repo: ReturnType<typeof makeRepo>;
  before(async () => {
    repo = makeRepo();
    node = await NodeFixture.start(first, { BERTH_STORAGE: 'btrfs', BERTH_STORAGE_GB: '4' });
  });
  after(async () => {
    await node?.stop();
    repo?.cleanup();
  });

  it('forks the whole workspace, ignored files included, from a subvolume snapshot', async () => {
    await node.json(['new', 'cow', '--repo', repo.path]);
    await node.cli([
      'exec',
      'cow',
      '--',
      'sh',
      '-c',
      'echo node_modules > .gitignore && mkdir -p node_modules/dep && head -c 20000000 /dev/urandom > node_modules/dep/blob && echo edit >> src/index.js',
    ]);
    const sum = (await node.cli(['exec', 'cow', '--', 'sha256sum', 'node_modules/dep/blob'])).stdout;
    const s = await node.json<SnapshotInfo>(['snap', 'cow']);
    assert.equal(s.bytes < 1000, true, 'the manifest holds only the small diff');
    await node.json(['fork', s.id, 'cow2']);
    assert.equal((await node.cli(['exec', 'cow2', '--', 'sha256sum', 'node_modules/dep/blob'])).stdout, sum);
    assert.match((await node.cli(['exec', 'cow2', '--', 'tail', '-1', 'src/index.js'])).stdout, /edit/);
    assert.equal((await node.cli(['exec', 'cow2', '--', 'git', 'branch', '--show-current'])).stdout.trim(), 'berth/cow2');
    await node.cli(['rm', '--discard', 'cow', 'cow2']);
    await node.json(['gc']);
  });
});
