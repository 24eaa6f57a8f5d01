// Bad devcontainer.json input: one line with the file and line, a stable code, nothing kept.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readDevcontainer } from '../../src/core/devcontainer.js';
import { BerthError, ERROR_TABLE } from '../../src/core/errors.js';

const OPTS = { localWorkspaceFolder: '/home/me/proj', localEnv: { HOME: '/home/me', TZ: 'UTC' } };

function refused(text: string, pattern: RegExp, opts = OPTS): void {
  assert.throws(
    () => readDevcontainer('.devcontainer/devcontainer.json', text, opts),
    (e: unknown) => {
      assert.ok(e instanceof BerthError, String(e));
      assert.ok(['invalid_devcontainer'].includes(e.code), e.code);
      assert.equal(e.exitCode, ERROR_TABLE.invalid_devcontainer.exit);
      assert.match(e.oneLine(), pattern);
      assert.doesNotMatch(e.oneLine(), /\n/);
      return true;
    },
  );
}

describe('devcontainer.json: bad input', () => {
  it('invalid JSONC names its line', () => {
    refused('{\n  "image": "x",\n  "remoteUser": "a" "b"\n}', /^\.devcontainer\/devcontainer\.json:3: invalid JSONC: a comma was expected/);
    refused('{\n  // never closed\n  "image": "x"\n', /:4: invalid JSONC: a } was expected/);
    refused('[1, 2]', /:1: a devcontainer.json holds one object/);
  });
  it('an unknown property names itself and its line', () => {
    refused('{\n  "image": "x",\n\n  "postCreateComand": "npm ci"\n}', /:4: unknown property "postCreateComand": check its spelling/);
    refused('{\n  "build": {\n    "dockerfile": "D",\n    "targte": "x"\n  }\n}', /:4: unknown property "build.targte"/);
  });
  it('privileged: true is refused unless the operator allows it', () => {
    refused('{\n  "image": "x",\n  "privileged": true\n}', /:3: privileged: true is refused: .*BERTH_ALLOW_PRIVILEGED=1/);
    const ok = readDevcontainer('d.json', '{"image": "x", "privileged": true}', { ...OPTS, allowPrivileged: true });
    assert.equal(ok.privileged, true);
    assert.equal(readDevcontainer('d.json', '{"image": "x", "privileged": false}', OPTS).privileged, false);
  });
  it('refuses Docker Compose, names no image, or both', () => {
    refused(
      '{\n  "dockerComposeFile": "c.yml",\n  "service": "app"\n}',
      /:2: dockerComposeFile: Docker Compose devcontainers are not supported/,
    );
    refused('{ "name": "n" }', /:1: a devcontainer.json needs "image" or "build.dockerfile"/);
    refused('{\n "image": "x",\n "build": {"dockerfile": "D"}\n}', /:2: .*either an image or a build/);
    refused('{\n "image": "x",\n "context": ".."\n}', /:3: context is only used with a Dockerfile/);
  });
  it('refuses malformed values with their line', () => {
    refused('{\n "image": "x",\n "postStartCommand": {"a": 3}\n}', /:3: postStartCommand\.a must be a command/);
    refused('{\n "image": "x",\n "forwardPorts": [\n  3000,\n  70000\n ]\n}', /:5: a forwarded port is/);
    refused('{\n "image": "x",\n "mounts": [\n  "source=a,type=volume"\n ]\n}', /:4: a mount needs an absolute target/);
    refused(
      '{\n "image": "x",\n "customizations": {"berth": {"services": {"web": {\n "comand": "x"}}}}\n}',
      /:3: customizations\.berth\.services\.web/,
    );
  });
  it('warns once per field it does not honour, with its line', () => {
    const c = readDevcontainer(
      'd.json',
      '{\n "image": "x",\n "runArgs": ["--init"],\n "capAdd": ["SYS_PTRACE"],\n "hostRequirements": {"cpus": 2}\n}',
      OPTS,
    );
    assert.deepEqual(
      c.warnings.map((w) => w.replace(/ is not honoured by berth: .*/, '')),
      ['d.json:3: runArgs', 'd.json:4: capAdd', 'd.json:5: hostRequirements'],
    );
  });
  it('substitutes variables, with defaults, and leaves containerEnv to the environment', () => {
    const c = readDevcontainer(
      'd.json',
      '{"image": "x", "containerEnv": {"A": "${localEnv:HOME}/x", "B": "${localEnv:NOPE:dflt:with:colons}", "C": "${localEnv:NOPE}", "D": "${localWorkspaceFolderBasename}", "E": "${env:TZ}"}, "remoteEnv": {"P": "${containerWorkspaceFolder}:${containerEnv:PATH}"}}',
      OPTS,
    );
    assert.deepEqual(c.containerEnv, { A: '/home/me/x', B: 'dflt:with:colons', C: '', D: 'proj', E: 'UTC' });
    assert.deepEqual(c.remoteEnv, { P: '/workspace:${containerEnv:PATH}' });
  });
});
