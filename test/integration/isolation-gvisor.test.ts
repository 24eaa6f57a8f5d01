// `--isolation gvisor`: an environment on runsc, a kernel of its own between the agent and the
// host's, per environment or as the node's default (BERTH_ISOLATION). Docker runs it where runsc
// is among the daemon's runtimes (scripts/private-engines.sh names it). Podman 4.3 runs every
// container its API makes with its default runtime, so there the tier is refused, never weakened.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { failureTracker, makeRepo, NodeFixture, engineRun, testEngines } from '../helpers/fixture.js';
import type { EnvInfo, SnapshotInfo } from '../../src/core/api.js';

function dockerHasRunsc(): boolean {
  try {
    return 'runsc' in (JSON.parse(engineRun('docker', ['info', '--format', '{{json .Runtimes}}'])) as Record<string, unknown>);
  } catch {
    return false;
  }
}

/** What the environment's kernel says of itself: gVisor's first line of its log, or the host's refusal. */
async function kernelOf(node: NodeFixture, name: string): Promise<string> {
  const r = await node.cli(['exec', name, '--', 'sh', '-c', 'dmesg 2>&1 | head -1']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

for (const engine of testEngines()) {
  describe(`gVisor isolation on ${engine}`, { timeout: 600_000 }, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const t = failureTracker();

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(t.failed);
      repo?.cleanup();
    });

    it('refuses an isolation tier it does not know, in one line, making nothing', () =>
      t.track(
        (async () => {
          const bad = await node.cli(['new', 'vm', '--repo', repo.path, '--isolation', 'firecracker']);
          assert.equal(bad.code, 2, bad.stderr);
          assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
          assert.match(bad.stderr, /--isolation must be runc or gvisor/);
          const ls = await node.json<EnvInfo[]>(['ls']);
          assert.deepEqual(
            ls.map((e) => e.name),
            [],
          );
        })(),
      ));

    if (engine === 'podman') {
      it('refuses gvisor on Podman, whose API cannot choose a runtime, and leaves nothing behind', () =>
        t.track(
          (async () => {
            const r = await node.cli(['new', 'g', '--repo', repo.path, '--isolation', 'gvisor']);
            assert.equal(r.code, 42, r.stderr);
            assert.match(r.stderr, /cannot run a container with runsc/);
            assert.deepEqual(await node.json<EnvInfo[]>(['ls']), []);
            assert.deepEqual(node.containers(), []);
          })(),
        ));
      return;
    }

    it(
      'runs an environment on gVisor: exec, files, snapshot and a fork on the node default',
      { skip: !dockerHasRunsc() && 'no runsc among the daemon runtimes' },
      () =>
        t.track(
          (async () => {
            await node.json<EnvInfo>(['new', 'g', '--repo', repo.path, '--isolation', 'gvisor', '--no-pool']);
            assert.match(await kernelOf(node, 'g'), /gVisor/);
            const w = await node.cli(['exec', 'g', '--', 'sh', '-c', 'echo inside > made.txt && cat src/index.js && id -u']);
            assert.equal(w.code, 0, w.stderr);
            assert.equal(w.stdout, 'module.exports = 42;\n0\n');
            // The default tier is still runc, with its user namespace.
            await node.json<EnvInfo>(['new', 'r', '--repo', repo.path, '--no-pool']);
            assert.doesNotMatch(await kernelOf(node, 'r'), /gVisor/);
            const snap = await node.json<SnapshotInfo>(['snap', 'g']);
            // A node whose default is gVisor forks onto it.
            await node.killDaemon('SIGTERM');
            await node.startDaemon({ BERTH_ISOLATION: 'gvisor' });
            await node.json<EnvInfo>(['fork', snap.id, 'g-fork']);
            assert.match(await kernelOf(node, 'g-fork'), /gVisor/);
            const r = await node.cli(['exec', 'g-fork', '--', 'cat', 'made.txt']);
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stdout, 'inside\n');
            await node.killDaemon('SIGTERM');
            await node.startDaemon();
          })(),
        ),
    );
  });
}
