// docs/sdk.md's examples are programs: every ```ts block is type-checked against the SDK's
// sources (strict, as a user's project would be), and the blocks marked `<!-- run -->` run
// against a real node, so the page cannot drift from the SDK.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { failureTracker, makeRepo, NodeFixture, ROOT, run, testEngines } from '../helpers/fixture.js';

interface Block {
  /** The line of docs/sdk.md the block's code starts on. */
  line: number;
  code: string;
  run: boolean;
}

function docBlocks(): Block[] {
  const lines = readFileSync(join(ROOT, 'docs', 'sdk.md'), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    let prev = i - 1;
    while (prev >= 0 && lines[prev]!.trim() === '') prev--;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== '```') end++;
    out.push({ line: start + 1, code: lines.slice(start, end).join('\n'), run: lines[prev]?.trim() === '<!-- run -->' });
    i = end;
  }
  return out;
}

const fileOf = (i: number): string => `example-${String(i).padStart(2, '0')}.ts`;

describe('docs/sdk.md', () => {
  const blocks = docBlocks();

  it('has examples, and every one type-checks against the SDK', { timeout: 240_000 }, async () => {
    assert.ok(blocks.length >= 10, `only ${blocks.length} examples`);
    assert.ok(blocks.some((b) => b.run));
    const dir = mkdtempSync(join(tmpdir(), 'berth-sdk-docs-'));
    try {
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
      // Past the first, examples use the `berth` and `env` of the first (the page says so).
      writeFileSync(
        join(dir, 'globals.d.ts'),
        "import type { Berth, Environment } from 'berth';\ndeclare global {\n  const berth: Berth;\n  const env: Environment;\n}\nexport {};\n",
      );
      // Each block is a module of its own (top-level await, its own names).
      blocks.forEach((b, i) => writeFileSync(join(dir, fileOf(i)), `${b.code}\nexport {};\n`));
      // A mistake, to show the check is not vacuous: it must fail there, and only there.
      writeFileSync(join(dir, 'mistake.ts'), 'export const wrong: number = await berth.list();\n');
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            lib: ['ES2023'],
            strict: true,
            noUncheckedIndexedAccess: true,
            noImplicitOverride: true,
            noImplicitReturns: true,
            isolatedModules: true,
            skipLibCheck: true,
            noEmit: true,
            types: ['node'],
            typeRoots: [join(ROOT, 'node_modules', '@types')],
            // `from 'berth'` is the SDK's source, not a build of it.
            paths: { berth: [join(ROOT, 'src', 'sdk', 'index.ts')] },
          },
          files: ['globals.d.ts', ...blocks.map((_, i) => fileOf(i)), 'mistake.ts'],
        }),
      );
      const r = await run(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], {
        cwd: dir,
        timeoutMs: 200_000,
      });
      const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
      const inExamples = errors
        .filter((l) => !l.startsWith('mistake.ts'))
        .map((l) => {
          const m = /^example-(\d+)\.ts\((\d+),(\d+)\): (.*)$/.exec(l);
          return m ? `docs/sdk.md:${blocks[Number(m[1])]!.line + Number(m[2]) - 1}:${m[3]}: ${m[4]}` : l;
        });
      assert.deepEqual(inExamples, [], `examples in docs/sdk.md do not type-check:\n${inExamples.join('\n')}\n${r.stderr}`);
      assert.equal(errors.length, 1, r.stdout);
      assert.match(errors[0]!, /^mistake\.ts\(1,14\): error TS2322/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const engine = testEngines()[0];
  if (engine) {
    describe(`the examples marked to run, on ${engine}`, () => {
      const tracker = failureTracker();
      let node: NodeFixture;
      let repo: ReturnType<typeof makeRepo>;
      let cwd: string;
      before(async () => {
        repo = makeRepo();
        // The examples name ./myapp: a clone of the test repository, in the directory they run in.
        cwd = mkdtempSync(join(tmpdir(), 'berth-sdk-docs-run-'));
        execFileSync('git', ['clone', '-q', repo.path, join(cwd, 'myapp')]);
        node = await NodeFixture.start(engine);
      });
      after(async () => {
        await node?.stop(tracker.failed);
        repo?.cleanup();
        if (cwd) rmSync(cwd, { recursive: true, force: true });
      });

      for (const b of blocks.filter((x) => x.run)) {
        it(`docs/sdk.md:${b.line}`, () =>
          tracker.track(
            (async () => {
              // Compiled as a user's TypeScript would be (await using included), importing the built SDK.
              const js = ts
                .transpileModule(b.code, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } })
                .outputText.replace(/from 'berth'/g, `from '${pathToFileURL(join(ROOT, 'dist', 'src', 'sdk', 'index.js')).href}'`);
              const file = join(cwd, `example-${b.line}.mjs`);
              writeFileSync(file, js);
              const r = await run(process.execPath, [file], { cwd, env: node.env, timeoutMs: 180_000 });
              assert.equal(r.code, 0, `docs/sdk.md:${b.line} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
              assert.doesNotMatch(r.stderr, /Error/);
              // Nothing it made is left: `await using` (or its disposer) removed it.
              assert.deepEqual(await node.json(['ls']), []);
              if (/npm test/.test(b.code)) assert.match(r.stdout, /npm test exited 0/);
            })(),
          ));
      }
    });
  }
});
