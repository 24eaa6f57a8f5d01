// `berth toolchain build --devcontainer PATH --explain --json` on both engines: per-step cache
// hits and misses with their reasons, a failing step's output, and bad input with file:line.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { engineRun, failureTracker, NodeFixture, testEngines } from '../helpers/fixture.js';
import { ERROR_TABLE } from '../../src/core/errors.js';
import type { BuiltDevcontainer } from '../../src/core/toolchain-api.js';

function project(dockerfile: string, config: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-dc-build-'));
  mkdirSync(join(dir, '.devcontainer'));
  writeFileSync(join(dir, '.devcontainer', 'devcontainer.json'), `// a test project\n${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(dir, '.devcontainer', 'Dockerfile'), dockerfile);
  writeFileSync(join(dir, 'app.txt'), 'one\n');
  return dir;
}

for (const engine of testEngines()) {
  describe(`devcontainer build on ${engine}`, () => {
    let node: NodeFixture;
    let toolchain: string;
    const dirs: string[] = [];
    const tracker = failureTracker();
    const nonce = randomBytes(6).toString('hex');
    before(async () => {
      node = await NodeFixture.start(engine);
      const tags = engineRun(engine, ['images', '--format', '{{.Repository}}:{{.Tag}}']).split('\n');
      toolchain = tags.find((t) => /(^|\/)berth-toolchain:[0-9a-f]{16}$/.test(t.trim()))!.trim();
      assert.ok(toolchain, 'the toolchain image is on the engine');
    });
    after(async () => {
      await node?.stop(tracker.failed);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    const dockerfile = (last: string): string =>
      `FROM ${toolchain}\nARG GREETING\nRUN echo "early ${nonce} $GREETING" > /early\nCOPY app.txt /app.txt\n# a comment\nRUN echo ${last} \\\n  > /late\n`;
    const build = async (dir: string): Promise<BuiltDevcontainer> =>
      node.json<BuiltDevcontainer>(['toolchain', 'build', '--devcontainer', join(dir, '.devcontainer', 'devcontainer.json'), '--explain']);
    const cache = (r: BuiltDevcontainer): string[] => r.steps.map((s) => `${s.line}:${s.cache}`);

    it('builds, then reuses every layer above a changed late line, and says why per step', () =>
      tracker.track(
        (async () => {
          const dir = project(dockerfile('late-1'), {
            build: { dockerfile: 'Dockerfile', context: '..', args: { GREETING: 'hi' } },
            runArgs: ['--init'],
          });
          dirs.push(dir);
          const first = await build(dir);
          assert.match(first.digest, /^sha256:[0-9a-f]{64}$/);
          // Line 2 (a bare ARG) may already be in the engine's cache from any earlier build on the same base.
          assert.deepEqual(cache(first).slice(2), ['3:miss', '4:miss', '6:miss']);
          assert.equal(first.steps[0]!.cache, 'base');
          assert.equal(first.steps[2]!.why, 'first build of this file on this node');
          assert.equal(first.cached, false);
          assert.match(first.warnings.join('\n'), /devcontainer\.json:\d+: runArgs is not honoured by berth/);

          writeFileSync(join(dir, '.devcontainer', 'Dockerfile'), dockerfile('late-2'));
          const second = await build(dir);
          assert.deepEqual(cache(second), ['1:base', '2:hit', '3:hit', '4:hit', '6:miss']);
          assert.match(second.steps[4]!.why, /^line 6 changed \(was: RUN echo late-1 > \/late\)/);
          assert.equal(second.steps[2]!.why, 'unchanged since the last build');
          assert.notEqual(second.digest, first.digest);

          const third = await build(dir);
          assert.equal(third.cached, true, JSON.stringify(third.steps));
          assert.equal(third.digest, second.digest);

          writeFileSync(join(dir, 'app.txt'), 'two\n');
          const fourth = await build(dir);
          assert.deepEqual(cache(fourth), ['1:base', '2:hit', '3:hit', '4:miss', '6:miss']);
          assert.equal(fourth.steps[3]!.why, 'the files it copies changed');
          assert.equal(fourth.steps[4]!.why, 'the step at line 4 above it was rebuilt');

          // The image is the one the engine holds, under berth's tag.
          const id = engineRun(engine, ['image', 'inspect', '--format', '{{.Id}}', fourth.tag]).trim();
          assert.equal(id.replace(/^(sha256:)?/, 'sha256:'), fourth.digest);
        })(),
      ));

    it('a failing step reports its line and output, and leaves no image or container behind', () =>
      tracker.track(
        (async () => {
          const marker = `failing-${nonce}`;
          const dir = project(`FROM ${toolchain}\nRUN echo ok-${nonce}\nRUN echo ${marker} && exit 3\n`, {
            build: { dockerfile: 'Dockerfile' },
          });
          dirs.push(dir);
          const r = await node.cli(['toolchain', 'build', '--devcontainer', dir, '--json']);
          assert.equal(r.code, ERROR_TABLE.build_failed.exit, r.stderr);
          assert.match(r.stderr, /^berth: Dockerfile:3: RUN echo failing-\S+ && exit 3: .*failing-/);
          assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
          const left = engineRun(engine, ['ps', '-a', '--no-trunc', '--format', '{{.Command}}']);
          assert.ok(!left.includes(marker), `a container of the failed step is left: ${left}`);
          const file = join(dir, '.devcontainer', 'devcontainer.json');
          // The steps that succeeded stay as the engine's untagged cache layers; nothing is tagged.
          const tagged = engineRun(engine, [
            'images',
            '--filter',
            `label=berth.devcontainer=${file}`,
            '--format',
            '{{.Repository}}:{{.Tag}}',
          ]);
          assert.deepEqual(
            tagged.split('\n').filter((t) => t.trim() && !t.includes('<none>')),
            [],
            'no image was tagged for the failed build',
          );
        })(),
      ));

    it('an image the engine holds is the toolchain; an unreachable registry is named in one line', () =>
      tracker.track(
        (async () => {
          const dir = project('', { image: toolchain, privileged: false });
          dirs.push(dir);
          const r = await node.json<BuiltDevcontainer>(['toolchain', 'build', '--devcontainer', dir]);
          const id = engineRun(engine, ['image', 'inspect', '--format', '{{.Id}}', toolchain]).trim();
          assert.equal(r.digest, id.replace(/^(sha256:)?/, 'sha256:'));

          const far = project('', { image: '127.0.0.1:1/nowhere/tools:1' });
          dirs.push(far);
          const u = await node.cli(['toolchain', 'build', '--devcontainer', far, '--json']);
          assert.equal(u.code, ERROR_TABLE.registry_unreachable.exit, u.stderr);
          assert.match(
            u.stderr,
            /^berth: image 127\.0\.0\.1:1\/nowhere\/tools:1: registry 127\.0\.0\.1:1 is not reachable from this node: /,
          );

          const fromFar = project('FROM 127.0.0.1:1/base:2\nRUN true\n', { build: { dockerfile: 'Dockerfile' } });
          dirs.push(fromFar);
          const f = await node.cli(['toolchain', 'build', '--devcontainer', fromFar, '--json']);
          assert.equal(f.code, ERROR_TABLE.registry_unreachable.exit, f.stderr);
          assert.match(f.stderr, /^berth: Dockerfile: FROM 127\.0\.0\.1:1\/base:2: registry 127\.0\.0\.1:1 is not reachable/);
        })(),
      ));

    it('bad input: a missing context, invalid JSONC, an unknown property, all with file:line', () =>
      tracker.track(
        (async () => {
          const dir = project(`FROM ${toolchain}\n`, { name: 'x', build: { dockerfile: 'Dockerfile', context: 'nope' } });
          dirs.push(dir);
          const r = await node.cli(['toolchain', 'build', '--devcontainer', dir, '--json']);
          assert.equal(r.code, ERROR_TABLE.invalid_devcontainer.exit, r.stderr);
          assert.match(r.stderr, /devcontainer\.json:6: the build context nope \(.*\) does not exist/);

          writeFileSync(join(dir, '.devcontainer', 'devcontainer.json'), '{\n  "image": "x",\n  "imagge": "y"\n}\n');
          const u = await node.cli(['toolchain', 'build', '--devcontainer', dir]);
          assert.equal(u.code, ERROR_TABLE.invalid_devcontainer.exit);
          assert.match(u.stderr, /devcontainer\.json:3: unknown property "imagge"/);

          writeFileSync(join(dir, '.devcontainer', 'devcontainer.json'), '{\n  "image": "x"\n  "remoteUser": "a"\n}\n');
          const j = await node.cli(['toolchain', 'build', '--devcontainer', dir]);
          assert.equal(j.code, ERROR_TABLE.invalid_devcontainer.exit);
          assert.match(j.stderr, /devcontainer\.json:3: invalid JSONC: a comma was expected/);
        })(),
      ));
  });
}
