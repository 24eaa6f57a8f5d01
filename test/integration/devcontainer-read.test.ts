// berth's reading of devcontainer.json files from public repositories (test/data/devcontainer,
// each with a SOURCE), field by field against the devcontainers CLI's own `read-configuration`.
// Every difference is intended, and named here where it is made.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BERTH_WORKSPACE, type Devcontainer, type LifecycleStep } from '../../src/core/devcontainer.js';
import { loadDevcontainer } from '../../src/toolchain/devcontainer/load.js';
import { BerthError } from '../../src/core/errors.js';
import { ROOT } from '../helpers/fixture.js';

const exec = promisify(execFile);
const DATA = join(ROOT, 'test', 'data', 'devcontainer');
const CLI = join(ROOT, 'node_modules', '.bin', 'devcontainer');
/** Refused on purpose (Docker Compose); tested below rather than compared. */
const REFUSED = new Set(['anthropics+claude-code-compose']);
/** A fixed local environment, so `${localEnv:…}` reads the same on both sides. */
const ENV = {
  ...process.env,
  TZ: 'Europe/Berlin',
  HOME: '/home/tester',
  // The devcontainers CLI asks a docker CLI for existing containers: the suite's own dockerd.
  ...(process.env.BERTH_DOCKER_SOCKET ? { DOCKER_HOST: `unix://${process.env.BERTH_DOCKER_SOCKET}` } : {}),
};

type Cfg = Record<string, unknown>;

async function cliRead(
  folder: string,
  merged = false,
): Promise<{ configuration: Cfg; workspace: { workspaceFolder: string }; mergedConfiguration?: Cfg }> {
  const args = ['read-configuration', '--workspace-folder', folder, ...(merged ? ['--include-merged-configuration'] : [])];
  const { stdout } = await exec(CLI, args, { env: ENV, maxBuffer: 1 << 24, timeout: 120_000 });
  return JSON.parse(stdout) as { configuration: Cfg; workspace: { workspaceFolder: string } };
}

/** The CLI's lifecycle value in berth's shape, written out here independently of berth's reader. */
function steps(stage: string, v: unknown): LifecycleStep[] {
  if (v === undefined) return [];
  if (typeof v === 'string' || Array.isArray(v)) return [{ name: stage, command: v as string | string[] }];
  return Object.entries(v as Record<string, string | string[]>).map(([name, command]) => ({ name, command }));
}

/**
 * The intended difference in variables: the CLI resolves `${containerWorkspaceFolder}` to its
 * own workspace folder (`workspaceFolder`, else /workspaces/NAME); berth's checkout is always
 * at /workspace, so berth resolves it there.
 */
function asBerth(v: unknown, cliWorkspace: string): unknown {
  return JSON.parse(
    JSON.stringify(v ?? null)
      .split(cliWorkspace)
      .join(BERTH_WORKSPACE),
  ) as unknown;
}

const HONOURED = new Set([
  '$schema',
  'name',
  'image',
  'build',
  'dockerFile',
  'context',
  'features',
  'containerEnv',
  'remoteEnv',
  'containerUser',
  'remoteUser',
  'forwardPorts',
  'onCreateCommand',
  'updateContentCommand',
  'postCreateCommand',
  'postStartCommand',
  'mounts',
  'customizations',
  'privileged',
]);

function compare(berth: Devcontainer, cli: Cfg, cliWorkspace: string): void {
  const c = asBerth(cli, cliWorkspace) as Cfg;
  const build = c.build as Cfg | undefined;
  assert.equal(berth.image, c.image);
  assert.equal(berth.name, c.name);
  const dockerfile = (build?.dockerfile ?? build?.dockerFile ?? c.dockerFile) as string | undefined;
  assert.equal(berth.build?.dockerfile, dockerfile);
  if (dockerfile) {
    // The CLI's default context is the folder of devcontainer.json, which berth writes as ".".
    assert.equal(berth.build?.context, build?.context ?? c.context ?? '.');
    assert.deepEqual(berth.build?.args, build?.args ?? {});
    assert.equal(berth.build?.target, build?.target);
  }
  assert.deepEqual(berth.containerEnv, c.containerEnv ?? {});
  assert.deepEqual(berth.remoteEnv, c.remoteEnv ?? {});
  assert.equal(berth.remoteUser, c.remoteUser);
  assert.equal(berth.containerUser, c.containerUser);
  assert.deepEqual(
    berth.forwardPorts.map((p) => (p.host ? `${p.host}:${p.port}` : p.port)),
    (c.forwardPorts as unknown[] | undefined) ?? [],
  );
  for (const stage of ['onCreateCommand', 'updateContentCommand', 'postCreateCommand', 'postStartCommand'] as const)
    assert.deepEqual(berth.lifecycle[stage], steps(stage, c[stage]), stage);
  assert.deepEqual(
    berth.features.map((f) => f.id),
    Object.keys((c.features as Cfg | undefined) ?? {}),
  );
  // Mounts: the CLI keeps the string form; berth splits it. The targets must agree.
  const mounts = ((c.mounts as unknown[] | undefined) ?? []).map((m) =>
    typeof m === 'string' ? /target=([^,]+)/.exec(m)?.[1] : (m as Cfg).target,
  );
  assert.deepEqual(
    berth.mounts.map((m) => m.target),
    mounts,
  );
  assert.deepEqual(berth.berth, (c.customizations as Cfg | undefined)?.berth);
  // Never silence: every field the CLI read and berth does not honour has a warning naming it.
  for (const key of Object.keys(c)) {
    if (HONOURED.has(key) || key === 'configFilePath') continue;
    assert.ok(
      berth.warnings.some((w) => w.includes(` ${key} is not honoured`)),
      `no warning for ${key}: ${berth.warnings.join(' | ')}`,
    );
  }
}

describe('devcontainer.json from public repositories, against `devcontainer read-configuration`', () => {
  const dirs = readdirSync(DATA).filter((d) => !REFUSED.has(d));
  it('ships at least eight, each with its SOURCE', () => {
    assert.ok(dirs.length >= 8, `${dirs.length} files`);
    for (const d of [...dirs, ...REFUSED])
      assert.match(
        readFileSync(join(DATA, d, 'SOURCE'), 'utf8'),
        /^repository: https:\/\/github.com\/.+\npath: .+\ncommit: [0-9a-f]{40}\n/,
      );
  });
  for (const d of dirs) {
    it(d, async () => {
      const folder = join(DATA, d);
      const [mine, theirs] = await Promise.all([loadDevcontainer(folder, { env: ENV, allowPrivileged: false }), cliRead(folder)]);
      compare(mine.config, theirs.configuration, theirs.workspace.workspaceFolder);
    });
  }

  it('the merged configuration agrees too, for an image the engine holds', async () => {
    // The merged configuration needs the image's metadata, so the image must be local: no
    // registry is reachable here. berth's own toolchain image is one.
    const images = await exec('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}', 'berth-toolchain'], { env: ENV });
    const image = images.stdout.split('\n').find((l) => l && !l.endsWith(':<none>'));
    assert.ok(image, 'the toolchain image is on the engine');
    const dir = mkdtempSync(join(tmpdir(), 'berth-dc-merged-'));
    try {
      mkdirSync(join(dir, '.devcontainer'));
      writeFileSync(
        join(dir, '.devcontainer', 'devcontainer.json'),
        `{
          // comments, trailing commas, variables, and every lifecycle form
          "image": "${image}",
          "containerEnv": { "HOSTWS": "\${localWorkspaceFolder}", "TZ": "\${localEnv:TZ}", "NOPE": "\${localEnv:BERTH_NOPE:fallback}", },
          "remoteEnv": { "IN": "\${containerWorkspaceFolder}/bin:\${containerEnv:PATH}" },
          "remoteUser": "root",
          "forwardPorts": [3000, "localhost:8080"],
          "onCreateCommand": "echo one",
          "postCreateCommand": ["echo", "two"],
          "postStartCommand": { "a": "echo a", "b": ["echo", "b"] },
          "mounts": ["source=cache-\${localWorkspaceFolderBasename},target=/cache,type=volume"],
          "customizations": { "berth": { "services": { "web": { "command": "npm start", "ready": "http:3000/" } } } },
        }`,
      );
      const [mine, theirs] = await Promise.all([loadDevcontainer(dir, { env: ENV }), cliRead(dir, true)]);
      assert.ok(theirs.mergedConfiguration, 'the CLI merged it');
      compare(mine.config, theirs.configuration, theirs.workspace.workspaceFolder);
      const merged = asBerth(theirs.mergedConfiguration, theirs.workspace.workspaceFolder) as Cfg;
      // The merged form keeps lifecycle commands as lists (one per source); berth's is the file's.
      assert.deepEqual(mine.config.remoteEnv, merged.remoteEnv);
      assert.deepEqual(mine.config.containerEnv, merged.containerEnv);
      assert.equal(mine.config.remoteUser, merged.remoteUser);
      assert.deepEqual(mine.config.lifecycle.postStartCommand, steps('postStartCommand', (merged.postStartCommands as unknown[])[0]));
      assert.equal(mine.config.containerEnv.NOPE, 'fallback');
      assert.equal(mine.config.remoteEnv.IN, '/workspace/bin:${containerEnv:PATH}');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses dockerComposeFile with one line naming the field and its line', async () => {
    await assert.rejects(loadDevcontainer(join(DATA, 'anthropics+claude-code-compose'), { env: ENV }), (e: unknown) => {
      assert.ok(e instanceof BerthError);
      assert.equal(e.code, 'invalid_devcontainer');
      assert.match(e.oneLine(), /devcontainer\.json:3: dockerComposeFile: Docker Compose devcontainers are not supported by berth: use /);
      assert.doesNotMatch(e.oneLine(), /\n/);
      return true;
    });
  });
});
