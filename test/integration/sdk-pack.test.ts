// The package as a user gets it: `npm pack`, installed into an empty project from its tarball,
// then `import { Berth } from 'berth'` against a real node, and a TypeScript program checked
// against the installed package's own types (not the repository's sources).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failureTracker, makeRepo, NodeFixture, ROOT, run, testEngines, type CliResult } from '../helpers/fixture.js';

/** npm, bounded in time; its output is kept for the failure message. */
async function npm(args: string[], cwd: string, timeoutMs: number): Promise<CliResult> {
  const r = await run('npm', [...args, '--no-audit', '--no-fund', '--no-update-notifier'], { cwd, timeoutMs });
  assert.equal(r.code, 0, `npm ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

// Plain JavaScript on Node 20 has no \`await using\`: the environment's disposer is called by hand.
const SMOKE = `import { Berth, NotFoundError } from 'berth';
const berth = await Berth.connect();
const out = {};
const env = await berth.create({ name: 'packed', repo: process.argv[2], agent: 'pack-test' });
try {
  out.created = env.name;
  out.listed = (await berth.list()).map((e) => e.name);
  const r = await env.exec(['true']);
  out.exitCode = r.exitCode;
  out.echo = (await env.exec(['echo', 'from the package'])).stdout;
  out.notFound = await env.files.read('nope').then(() => false, (e) => e instanceof NotFoundError);
} finally {
  await env[Symbol.asyncDispose]();
}
out.after = (await berth.list()).map((e) => e.name);
berth.close();
console.log(JSON.stringify(out));
`;

/** A program a user would write, checked against the installed types under the strictest settings. */
const TYPED = `import { Berth, BerthError, NotFoundError, type BerthEvent, type CommandHandle, type ExecOutcome } from 'berth';

export async function main(repo: string): Promise<number> {
  using berth = await Berth.connect({ autostart: false });
  await using env = await berth.create({ name: 'typed', repo, limits: { memoryMb: 512 } });
  const r: ExecOutcome = await env.exec(['npm', 'test'], { timeoutMs: 60_000, cwd: '/workspace' });
  const h: CommandHandle = env.spawn(['cat']);
  h.write('hi\\n');
  h.end();
  for await (const chunk of h.stdout) process.stdout.write(chunk);
  const { exitCode } = await h.wait();
  await env.files.write('a.txt', 'a');
  const entries = await env.files.list('.');
  const names: string[] = entries.map((e) => e.name);
  const s = await env.services.start('web', { cmd: ['python3', '-m', 'http.server', '8000'], ready: 'http:8000/' });
  const v = await env.verify({ http: 'http://localhost:8000/' });
  const snap = await env.snapshot();
  await using fork = await berth.fork(snap, 'typed-2');
  const stop = new AbortController();
  for await (const e of berth.events({ env: fork.name, signal: stop.signal })) {
    const t: BerthEvent['type'] = e.type;
    if (t === 'command.ended') stop.abort();
  }
  try {
    await env.files.read('missing');
  } catch (err) {
    if (err instanceof NotFoundError) return 1;
    if (err instanceof BerthError) return err.exitCode;
  }
  return r.exitCode + exitCode + names.length + (s.readyMs ?? 0) + (v.verified ? 0 : 1);
}
`;

const engine = testEngines()[0];
if (engine) {
  describe(`the packed package, on ${engine}`, () => {
    const tracker = failureTracker();
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let dir: string;
    before(async () => {
      repo = makeRepo();
      dir = mkdtempSync(join(tmpdir(), 'berth-pack-'));
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('installs from its tarball, makes an environment through `berth`, and type-checks a program', { timeout: 12 * 60_000 }, () =>
      tracker.track(
        (async () => {
          const packed = await npm(['pack', '--json', '--pack-destination', dir], ROOT, 120_000);
          const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
          assert.ok(info);
          const files = new Set(info.files.map((f) => f.path));
          for (const f of ['package.json', 'bin/berth', 'dist/src/sdk/index.js', 'dist/src/sdk/index.d.ts', 'dist/src/agent/agent.js'])
            assert.ok(files.has(f), `${f} is in the tarball`);
          assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('test/')), 'no tests in the tarball');

          const proj = join(dir, 'app');
          await run('mkdir', [proj]);
          await npm(['init', '-y'], proj, 60_000);
          const pkg = JSON.parse(readFileSync(join(proj, 'package.json'), 'utf8')) as Record<string, unknown>;
          writeFileSync(join(proj, 'package.json'), JSON.stringify({ ...pkg, type: 'module', private: true }, null, 2));
          // Install scripts are skipped: they only compile the node daemon's native modules
          // (better-sqlite3 takes minutes on two cores), which a program using the SDK never
          // loads. BERTH_PACK_FULL=1 installs the way a user's npm does, scripts and all.
          const full = process.env.BERTH_PACK_FULL === '1';
          await npm(
            ['install', join(dir, info.filename), '--prefer-offline', ...(full ? [] : ['--ignore-scripts'])],
            proj,
            full ? 10 * 60_000 : 5 * 60_000,
          );
          assert.ok(existsSync(join(proj, 'node_modules', 'berth', 'dist', 'src', 'sdk', 'index.js')));

          // The SDK, as an ES module importing the package by its name, against the real node.
          writeFileSync(join(proj, 'smoke.mjs'), SMOKE);
          const env = { ...node.env, BERTH_NO_AUTOSTART: '1' };
          const smoke = await run(process.execPath, ['smoke.mjs', repo.path], { cwd: proj, env, timeoutMs: 120_000 });
          assert.equal(smoke.code, 0, smoke.stderr);
          assert.deepEqual(JSON.parse(smoke.stdout), {
            created: 'packed',
            listed: ['packed'],
            exitCode: 0,
            echo: 'from the package\n',
            notFound: true,
            after: [],
          });

          // The package's command line, from its bin entry.
          const ls = await run(join(proj, 'node_modules', '.bin', 'berth'), ['ls', '--json'], { cwd: proj, env, timeoutMs: 60_000 });
          assert.equal(ls.code, 0, ls.stderr);
          assert.deepEqual(JSON.parse(ls.stdout), []);

          // The installed types, with the strictest settings and nothing skipped: every type the
          // package's declarations name must come with it.
          writeFileSync(join(proj, 'program.ts'), TYPED);
          writeFileSync(
            join(proj, 'tsconfig.json'),
            JSON.stringify({
              compilerOptions: {
                target: 'ES2022',
                module: 'NodeNext',
                moduleResolution: 'NodeNext',
                lib: ['ES2023'],
                strict: true,
                noUncheckedIndexedAccess: true,
                exactOptionalPropertyTypes: false,
                skipLibCheck: false,
                noEmit: true,
                // A user's project has Node's types of its own; this one borrows the repository's.
                typeRoots: [join(ROOT, 'node_modules', '@types')],
                types: ['node'],
              },
              files: ['program.ts'],
            }),
          );
          const tsc = await run(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: proj, timeoutMs: 180_000 });
          assert.equal(
            tsc.code,
            0,
            `the installed types do not check (a package their declarations import must be a dependency, not a devDependency):\n${tsc.stdout}${tsc.stderr}`,
          );
          // And a mistake is caught by them (the check is not vacuous).
          writeFileSync(join(proj, 'program.ts'), `${TYPED}\nexport const wrong: number = (await Berth.connect()).list();\n`);
          const bad = await run(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: proj, timeoutMs: 180_000 });
          assert.notEqual(bad.code, 0);
          assert.match(bad.stdout, /program\.ts.*TS2322/);
        })(),
      ),
    );
  });
}
