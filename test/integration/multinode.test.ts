// Stepping into an agent's context from another machine, for real: a laptop, two agent
// nodes and a registry, each a network namespace with its own engine storage and daemon; the
// laptop's links to the agent nodes go through a delaying proxy (50 ms round trip).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, makeRepo, NodeFixture, run } from '../helpers/fixture.js';
import { startRegistry, TestNetwork, type TestHost } from '../helpers/hosts.js';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.js';
import type { EnvInfo } from '../../src/core/api.js';

interface Entered extends EnvInfo {
  enterMs: number;
  transferred: { blobs: number; bytes: number };
  toolchainPulled: boolean;
}

describe('many nodes: enter, push, attach, forward, SSH, placement', () => {
  let net: TestNetwork;
  let laptop: TestHost;
  let agents1: TestHost;
  let agents2: TestHost;
  let registry: string;
  let registryHost: TestHost;
  let repo: ReturnType<typeof makeRepo>;
  const proxies: DelayProxy[] = [];
  let digest = '';

  before(async () => {
    repo = makeRepo();
    // A lockfile, so environments of this repository have an npm cache keyed by it.
    writeFileSync(
      join(repo.path, 'package-lock.json'),
      JSON.stringify({
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'app', version: '1.0.0' } },
      }),
    );
    spawnSync('git', ['-C', repo.path, 'add', '-A']);
    spawnSync('git', ['-C', repo.path, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-qm', 'lockfile']);
    net = TestNetwork.create();
    const reg = net.addHost('registry');
    registryHost = reg;
    laptop = net.addHost('laptop');
    agents1 = net.addHost('agents1');
    agents2 = net.addHost('agents2');
    registry = await startRegistry(reg);
    // This machine's node built the toolchain; it goes to the registry, and the agent nodes
    // take it from there into their own storage. The laptop starts with none.
    const here = await NodeFixture.start('podman');
    try {
      const push = await here.cli(['toolchain', 'push', '--registry', registry, '--json']);
      assert.equal(push.code, 0, push.stderr);
      digest = (JSON.parse(push.stdout) as { digest: string }).digest;
    } finally {
      await here.stop(false);
    }
    for (const h of [laptop, agents1, agents2]) await h.startPodman();
    for (const h of [agents1, agents2]) {
      await h.startNode();
      const pull = await h.cli(['toolchain', 'pull', digest, '--registry', registry], { timeoutMs: 300_000 });
      assert.equal(pull.code, 0, pull.stderr);
    }
    await laptop.startNode();
    for (const [name, h] of [
      ['agents-1', agents1],
      ['agents-2', agents2],
    ] as const) {
      const proxy = await startDelayProxy({ host: h.addr, port: 7700 }, 50, net.gateway);
      proxies.push(proxy);
      const tokenFile = join(laptop.dir, `${name}.token`);
      writeFileSync(tokenFile, h.token);
      const add = await laptop.cli([
        'node',
        'add',
        name,
        `tcp://${net.gateway}:${proxy.port}`,
        '--token-file',
        tokenFile,
        '--registry',
        registry,
      ]);
      assert.equal(add.code, 0, add.stderr);
    }
    // The agent's repository lives on the agent node.
    await agents1.json(['new', 'fix-login', '--repo', repo.path, '--agent', 'claude-1', '--task', 'fix login', '--network', 'none']);
    await agents2.json(['new', 'other', '--repo', repo.path, '--agent', 'claude-2', '--network', 'none']);
    const work = await agents1.cli([
      'exec',
      'fix-login',
      '--',
      'sh',
      '-c',
      'echo "agent note" > NOTES.md && git add NOTES.md && git commit -qm "agent: notes" && echo wip >> src/index.js && mkdir -p /root/.npm/_cacache && head -c 2000000 /dev/urandom > /root/.npm/_cacache/blob && echo agent-cache > /root/.npm/_cacache/marker',
    ]);
    assert.equal(work.code, 0, work.stderr);
  });

  after(async () => {
    for (const p of proxies) await p.close();
    if (net) {
      for (const h of net.hosts) {
        const d = h.log('daemon');
        if (d.includes('internal error')) process.stderr.write(`[${h.name} daemon]\n${d}\n`);
      }
      await net.destroy();
    }
    repo?.cleanup();
  });

  it('lists every environment on every node', async () => {
    const all = await laptop.json<{ envs: Array<EnvInfo & { node: string }>; unreachable: string[] }>(['ls', '--all']);
    assert.deepEqual(all.envs.map((e) => [e.node, e.name, e.labels.agent]).sort(), [
      ['agents-1', 'fix-login', 'claude-1'],
      ['agents-2', 'other', 'claude-2'],
    ]);
    assert.deepEqual(all.unreachable, []);
  });

  it('enters an agent environment on a cold laptop: toolchain, commits and work arrive', async () => {
    const e = await laptop.json<Entered>(['enter', 'agents-1/fix-login', '--no-shell']);
    assert.equal(e.toolchainPulled, true, 'the laptop had no toolchain and pulled it by digest');
    assert.equal(e.toolchain, digest);
    assert.equal(e.upstream?.node, 'agents-1');
    const log = await laptop.cli(['exec', 'fix-login', '--', 'git', 'log', '--format=%s']);
    assert.deepEqual(log.stdout.trim().split('\n'), ['agent: notes', 'lockfile', 'initial']);
    const status = await laptop.cli(['exec', 'fix-login', '--', 'git', 'status', '--short']);
    assert.equal(status.stdout, ' M src/index.js\n');
    assert.equal((await laptop.cli(['exec', 'fix-login', '--', 'cat', 'NOTES.md'])).stdout, 'agent note\n');
    // The npm cache came along (fetched beside the toolchain, unpacked by the engine), byte for byte.
    const sums = async (h: TestHost): Promise<string> =>
      (await h.cli(['exec', 'fix-login', '--', 'sh', '-c', 'cd /root/.npm/_cacache && sha256sum blob marker'])).stdout;
    assert.equal(await sums(laptop), await sums(agents1));
    assert.match(await sums(laptop), /marker/);
    // Again, warm: nothing but the new snapshot's manifest moves.
    const rm = await laptop.cli(['rm', '--discard', 'fix-login']);
    assert.equal(rm.code, 0, rm.stderr);
    const warm = await laptop.json<Entered>(['enter', 'agents-1/fix-login', '--no-shell']);
    assert.equal(warm.toolchainPulled, false);
    assert.ok(warm.transferred.blobs <= 1, `warm enter moved ${warm.transferred.blobs} blobs`);
    assert.equal(await sums(laptop), await sums(agents1), 'the cache volume kept here serves the next enter');
  });

  it('pushes the human fix back, and reports a conflict the way git does without overwriting', async () => {
    await laptop.cli(['exec', 'fix-login', '--', 'sh', '-c', 'echo "human fix" > FIX.md && echo "module.exports = 43;" > src/index.js']);
    const push = await laptop.cli(['push', 'fix-login']);
    assert.equal(push.code, 0, push.stderr);
    assert.equal((await agents1.cli(['exec', 'fix-login', '--', 'cat', 'FIX.md'])).stdout, 'human fix\n');
    assert.equal((await agents1.cli(['exec', 'fix-login', '--', 'cat', 'src/index.js'])).stdout, 'module.exports = 43;\n');
    // The agent goes on, and so does the human, on the same file.
    await agents1.cli(['exec', 'fix-login', '--', 'sh', '-c', 'echo "agent says" > FIX.md']);
    await laptop.cli(['exec', 'fix-login', '--', 'sh', '-c', 'echo "human says" > FIX.md']);
    const conflict = await laptop.cli(['push', 'fix-login']);
    assert.equal(conflict.code, 21);
    assert.match(conflict.stderr, /^CONFLICT \(content\): Merge conflict in FIX\.md$/m);
    assert.equal((await agents1.cli(['exec', 'fix-login', '--', 'cat', 'FIX.md'])).stdout, 'agent says\n', 'nothing was overwritten');
  });

  it('attaches to the remote environment itself, forwards its ports, and serves SSH', async () => {
    const attach = await laptop.cli(['enter', 'agents-1/fix-login', '--attach'], { stdin: 'echo "on $(hostname)"; exit 7\n' });
    assert.equal(attach.code, 7);
    assert.match(attach.stdout, /on berth-[0-9a-f]+-fix-login/);

    const web = await agents1.cli([
      'service',
      'start',
      'fix-login',
      'web',
      '--ready',
      'http:8000/',
      '--',
      'python3',
      '-m',
      'http.server',
      '8000',
    ]);
    assert.equal(web.code, 0, web.stderr);
    const fwd = await run(
      'nsenter',
      [
        `--net=/run/netns/${laptop.ns}`,
        'sh',
        '-c',
        `${process.execPath} ${BERTH} forward agents-1/fix-login 8000 --local 18000 & pid=$!; for i in $(seq 50); do curl -sf http://127.0.0.1:18000/FIX.md && break; sleep 0.2; done; kill $pid`,
      ],
      { env: laptop.env, timeoutMs: 60_000 },
    );
    assert.equal(fwd.stdout, 'agent says\n', fwd.stderr);

    const cfg = join(laptop.dir, 'ssh_config');
    const sc = await laptop.cli(['ssh-config']);
    assert.equal(sc.code, 0, sc.stderr);
    writeFileSync(cfg, sc.stdout);
    const ssh = await run(
      'nsenter',
      [`--net=/run/netns/${laptop.ns}`, 'ssh', '-F', cfg, 'fix-login.agents-1.berth', 'cat FIX.md; exit 4'],
      { env: laptop.env, timeoutMs: 60_000 },
    );
    assert.equal(ssh.code, 4, ssh.stderr);
    assert.equal(ssh.stdout, 'agent says\n');

    // SFTP, and scp (which speaks SFTP), through the same ProxyCommand: files both ways, intact.
    const up = join(laptop.dir, 'up.bin');
    writeFileSync(up, randomBytes(3_000_000));
    const upSum = createHash('sha256').update(readFileSync(up)).digest('hex');
    const batch = join(laptop.dir, 'sftp.batch');
    writeFileSync(batch, `put ${up} /workspace/up.bin\nget /workspace/FIX.md ${join(laptop.dir, 'FIX.md')}\n`);
    const sftp = await run('nsenter', [`--net=/run/netns/${laptop.ns}`, 'sftp', '-F', cfg, '-b', batch, 'fix-login.agents-1.berth'], {
      env: laptop.env,
      timeoutMs: 60_000,
    });
    assert.equal(sftp.code, 0, sftp.stderr);
    assert.equal(readFileSync(join(laptop.dir, 'FIX.md'), 'utf8'), 'agent says\n');
    const there = await agents1.cli(['exec', 'fix-login', '--', 'sha256sum', '/workspace/up.bin']);
    assert.equal(there.stdout.split(' ')[0], upSum);
    const back = join(laptop.dir, 'back.bin');
    const scp = await run(
      'nsenter',
      [`--net=/run/netns/${laptop.ns}`, 'scp', '-F', cfg, 'fix-login.agents-1.berth:/workspace/up.bin', back],
      {
        env: laptop.env,
        timeoutMs: 60_000,
      },
    );
    assert.equal(scp.code, 0, scp.stderr);
    assert.equal(createHash('sha256').update(readFileSync(back)).digest('hex'), upSum);
    await agents1.cli(['exec', 'fix-login', '--', 'rm', '/workspace/up.bin']);
  });

  it('places environments by operator', async () => {
    writeFileSync(join(laptop.home, 'placement.json'), JSON.stringify({ human: 'local', agent: 'agents-2' }));
    const placed = await laptop
      .json<EnvInfo>(['new', 'task-7', '--operator', 'agent', '--repo', repo.path, '--network', 'none'])
      .catch((e: Error) => e);
    // The repository path is the agents' (shared by this test through the file system).
    assert.ok(!(placed instanceof Error), String(placed));
    const d = await agents2.json<EnvInfo>(['describe', 'task-7']);
    assert.equal(d.placement.operator, 'agent');
    assert.match(d.placement.reason, /operator agent -> agents-2/);
    const bad = await laptop.cli(['new', 'x', '--operator', 'robot', '--repo', repo.path]);
    assert.equal(bad.code, 2);
  });

  it('refuses a toolchain layer the registry serves damaged, keeps nothing of it, and pulls cleanly once it is mended', async () => {
    // The registry's own storage is damaged on disk: one byte of the layer, in the middle.
    const blobs = join(registryHost.dir, 'registry', 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256');
    const files = readdirSync(blobs).flatMap((d) => readdirSync(join(blobs, d)).map((h) => join(blobs, d, h, 'data')));
    const layer = files.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const at = Math.floor(statSync(layer).size / 2);
    const flip = (): void => {
      const fd = openSync(layer, 'r+');
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      b[0] = b[0]! ^ 0xff;
      writeSync(fd, b, 0, 1, at);
      closeSync(fd);
    };
    const fresh = net.addHost('fresh');
    await fresh.startPodman();
    await fresh.startNode();
    const inEngine = (): number =>
      spawnSync('podman', ['--root', join(fresh.dir, 'storage'), '--runroot', join(fresh.dir, 'run'), 'image', 'exists', digest]).status ??
      -1;
    const layers = join(fresh.cache, 'layers');
    flip();
    try {
      // Both ways in: Podman pulling by itself (the default here), and berth streaming the layers in.
      for (const via of ['engine', 'berth']) {
        const bad = await fresh.cli(['toolchain', 'pull', digest, '--registry', registry, '--via', via], { timeoutMs: 300_000 });
        assert.equal(bad.code, 19, `${via}: ${bad.stderr}`);
        assert.match(bad.stderr, /layer sha256:[0-9a-f]{12} from the registry does not match its digest/);
        assert.deepEqual(existsSync(layers) ? readdirSync(layers) : [], [], `${via}: no layer file, whole or partial, was kept`);
        assert.equal(inEngine(), 1, `${via}: the damaged toolchain is not in the engine`);
      }
    } finally {
      flip();
    }
    const good = await fresh.cli(['toolchain', 'pull', digest, '--registry', registry, '--via', 'berth', '--json'], { timeoutMs: 300_000 });
    assert.equal(good.code, 0, good.stderr);
    assert.equal((JSON.parse(good.stdout) as { digest: string }).digest, digest);
    assert.equal(inEngine(), 0, 'the mended toolchain is in the engine');
    assert.equal(readdirSync(layers).length, 1, 'the mended layer is kept for the next pull');
  });

  it('handles bad tokens, unreachable nodes, a node lost mid-enter, a down registry and a remote that vanished', async () => {
    const wrongToken = join(laptop.dir, 'wrong.token');
    writeFileSync(wrongToken, 'not-the-token');
    const add = await laptop.cli(['node', 'add', 'imposter', `tcp://${agents1.addr}:7700`, '--token-file', wrongToken]);
    assert.equal(add.code, 13);
    const away = await laptop.cli(['node', 'add', 'ghost', `tcp://${net.prefix}.250:7700`, '--token-file', wrongToken], {
      timeoutMs: 60_000,
    });
    assert.equal(away.code, 10);
    const nodes = await laptop.json<Array<{ name: string }>>(['node', 'ls']);
    assert.deepEqual(nodes.map((n) => n.name).sort(), ['agents-1', 'agents-2'], 'nothing half-added');

    // agents-2 goes away in the middle of an enter: no partial local environment.
    await agents2.cli(['exec', 'other', '--', 'sh', '-c', 'head -c 3000000 /dev/urandom > big.bin']);
    const entering = laptop.cli(['enter', 'agents-2/other', '--no-shell']);
    await sleep(300);
    await agents2.stopNode('SIGKILL');
    const lost = await entering;
    assert.notEqual(lost.code, 0);
    assert.equal((await laptop.cli(['describe', 'other'])).code, 4, 'a partial environment was left');
    await agents2.startNode();
    const retry = await laptop.json<Entered>(['enter', 'agents-2/other', '--no-shell']);
    assert.equal(retry.name, 'other');

    // The registry is down and the laptop lacks the toolchain: a clear error, nothing made.
    await laptop.cli(['rm', '--discard', 'other']);
    const down = await laptop.cli(['toolchain', 'pull', 'sha256:' + '1'.repeat(64), '--registry', `${net.prefix}.251:5000`], {
      timeoutMs: 60_000,
    });
    assert.equal(down.code, 9);
    assert.match(down.stderr, /registry .* is unreachable/);

    // The remote environment is removed while it is entered here.
    const gone = await agents1.cli(['rm', '--discard', 'fix-login']);
    assert.equal(gone.code, 0, gone.stderr);
    const orphan = await laptop.cli(['push', 'fix-login']);
    assert.equal(orphan.code, 4);
    assert.match(orphan.stderr, /no environment named fix-login/);
    assert.equal((await laptop.cli(['exec', 'fix-login', '--', 'cat', 'FIX.md'])).stdout, 'human says\n', 'the local work is intact');
  });
});
