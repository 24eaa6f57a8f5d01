// User namespaces by default: root in an environment is the first uid of the node's subordinate
// range on the host (Podman per container; dockerd with userns-remap, as scripts/private-engines.sh
// starts it). Everything an environment does still works: its workspace (checked out, written,
// snapshotted and forked), its cache volumes, the PTY helper, SSH and SFTP, enter and push.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failureTracker, makeRepo, NodeFixture, run, testEngines } from '../helpers/fixture.js';
import type { EnvInfo, SnapshotInfo } from '../../src/core/api.js';

/** Every path under a directory (links not followed), with its host owner. */
function owners(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d)) {
      if (rel === '' && name === '.git') continue;
      const p = join(d, name);
      const st = lstatSync(p);
      out.set(rel + name, `${st.uid}:${st.gid}`);
      if (st.isDirectory()) walk(p, `${rel}${name}/`);
    }
  };
  walk(dir, '');
  return out;
}

/** Where the node keeps the environment's workspace: under its storage's root (its own btrfs). */
async function workspaceOf(node: NodeFixture, env: EnvInfo): Promise<string> {
  const info = await node.json<{ storage: { root: string } }>(['node', 'info']);
  return join(info.storage.root, 'envs', env.id, 'workspace');
}

/** The host uid and gid root maps to, from the environment's own /proc/self/uid_map and gid_map. */
async function mapping(node: NodeFixture, name: string): Promise<{ uid: number; gid: number; size: number; id: string }> {
  const r = await node.cli(['exec', name, '--', 'sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const [u0, uHost, uSize] = lines[0]!.trim().split(/\s+/).map(Number);
  const [g0, gHost] = lines[1]!.trim().split(/\s+/).map(Number);
  assert.equal(u0, 0);
  assert.equal(g0, 0);
  return { uid: uHost!, gid: gHost!, size: uSize!, id: `${lines[2]}:${lines[3]}` };
}

for (const engine of testEngines()) {
  describe(`user namespaces on ${engine}`, { timeout: 600_000 }, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const t = failureTracker();
    let ids: { uid: number; gid: number };

    before(async () => {
      repo = makeRepo();
      // A lockfile, so environments of this commit share an npm cache volume.
      writeFileSync(join(repo.path, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, packages: {} }) + '\n');
      execFileSync('git', ['-C', repo.path, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'add', '-A']);
      execFileSync('git', ['-C', repo.path, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-qm', 'lockfile']);
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(t.failed);
      repo?.cleanup();
    });

    it('maps root inside to an unprivileged host range, and owns the workspace by it (the repository stays as it was)', () =>
      t.track(
        (async () => {
          const before = owners(repo.path);
          const env = await node.json<EnvInfo>(['new', 'ns', '--repo', repo.path, '--no-pool']);
          const m = await mapping(node, 'ns');
          assert.equal(m.id, '0:0', 'root inside');
          assert.ok(m.uid >= 65536 && m.gid >= 65536, `root maps to host ${m.uid}:${m.gid}, not a system id`);
          assert.ok(m.size >= 65536, `the range holds ${m.size} ids`);
          ids = m;
          for (const [path, owner] of owners(await workspaceOf(node, env))) assert.equal(owner, `${m.uid}:${m.gid}`, path);
          assert.deepEqual(owners(repo.path), before, "the user's repository keeps its owners");
          // Writes inside land as the range's root on the host, and stay writable inside.
          const w = await node.cli([
            'exec',
            'ns',
            '--',
            'sh',
            '-c',
            'mkdir -p made/deep && echo one > made/deep/f && chmod +x made/deep/f && ln -s deep/f made/l && echo two >> src/index.js',
          ]);
          assert.equal(w.code, 0, w.stderr);
          const st = statSync(join(await workspaceOf(node, env), 'made', 'deep', 'f'));
          assert.deepEqual([st.uid, st.gid], [m.uid, m.gid]);
          // Root inside is not root over the host's files: the node's binary and the agent are read-only, and
          // a file only host root may read is not readable through a mount either.
          const ro = await node.cli(['exec', 'ns', '--', 'sh', '-c', 'touch /.berth/agent/x 2>&1; echo rc=$?']);
          assert.match(ro.stdout, /rc=[1-9]/);
        })(),
      ));

    it('cannot raise its own limits from inside: rlimits, the cgroup, a new mount', () =>
      t.track(
        (async () => {
          const script = [
            'ulimit -Hn $(( $(ulimit -Hn) + 1 )) 2>/dev/null && echo raised-nofile',
            'ulimit -Hu $(( $(ulimit -Hu) + 1 )) 2>/dev/null && echo raised-nproc',
            'for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max; do [ -e $f ] && (echo max > $f) 2>/dev/null && echo raised $f; done',
            'for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do [ -e $f ] && (echo -1 > $f) 2>/dev/null && echo raised $f; done',
            'mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo mounted',
            'echo checked',
          ].join('; ');
          const r = await node.cli(['exec', 'ns', '--', 'sh', '-c', script]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, 'checked\n');
        })(),
      ));

    it('snapshots and forks keep every file, mode and link, owned by the range and writable in the fork', () =>
      t.track(
        (async () => {
          const snap = await node.json<SnapshotInfo>(['snap', 'ns']);
          const fork = await node.json<EnvInfo>(['fork', snap.id, 'ns-fork']);
          const r = await node.cli([
            'exec',
            'ns-fork',
            '--',
            'sh',
            '-c',
            'cat made/deep/f; test -x made/deep/f && readlink made/l; tail -1 src/index.js; echo three >> made/deep/f && id -u',
          ]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, 'one\ndeep/f\ntwo\n0\n');
          for (const [path, owner] of owners(await workspaceOf(node, fork))) assert.equal(owner, `${ids.uid}:${ids.gid}`, path);
          const g = await node.cli(['exec', 'ns-fork', '--', 'git', 'status', '--porcelain']);
          assert.equal(g.code, 0, g.stderr);
          assert.match(g.stdout, /made\//);
        })(),
      ));

    it('shares a writable cache volume between environments of one lockfile', () =>
      t.track(
        (async () => {
          const w = await node.cli(['exec', 'ns', '--', 'sh', '-c', 'echo cached > /root/.npm/marker && stat -c %u:%g /root/.npm/marker']);
          assert.equal(w.code, 0, w.stderr);
          assert.equal(w.stdout, '0:0\n');
          const r = await node.cli(['exec', 'ns-fork', '--', 'sh', '-c', 'cat /root/.npm/marker && echo again >> /root/.npm/marker']);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, 'cached\n');
        })(),
      ));

    it('runs a PTY shell, SSH and SFTP as root inside the namespace', () =>
      t.track(
        (async () => {
          const sh = await node.cli(['shell', 'ns'], { stdin: 'cat /proc/self/uid_map; exit 5\n' });
          assert.equal(sh.code, 5, sh.stderr);
          assert.match(sh.stdout, new RegExp(`0\\s+${ids.uid}\\s+`));
          const dir = mkdtempSync(join(tmpdir(), 'berth-ssh-'));
          try {
            const cfg = join(dir, 'ssh_config');
            const sc = await node.cli(['ssh-config']);
            assert.equal(sc.code, 0, sc.stderr);
            writeFileSync(cfg, sc.stdout);
            const ssh = await run('ssh', ['-F', cfg, 'ns.berth', 'id -u; cat /proc/self/uid_map'], { env: node.env });
            assert.equal(ssh.code, 0, ssh.stderr);
            assert.match(ssh.stdout, new RegExp(`^0\\n\\s*0\\s+${ids.uid}\\s+`));
            const batch = join(dir, 'sftp.batch');
            writeFileSync(join(dir, 'up.txt'), 'by sftp\n');
            writeFileSync(batch, `put ${join(dir, 'up.txt')} /workspace/up.txt\nget /workspace/made/deep/f ${join(dir, 'down.txt')}\n`);
            const sftp = await run('sftp', ['-F', cfg, '-b', batch, 'ns.berth'], { env: node.env });
            assert.equal(sftp.code, 0, sftp.stderr);
            assert.equal(readFileSync(join(dir, 'down.txt'), 'utf8'), 'one\n');
            const up = lstatSync(join(await workspaceOf(node, await node.json<EnvInfo>(['describe', 'ns'])), 'up.txt'));
            assert.deepEqual([up.uid, up.gid], [ids.uid, ids.gid]);
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        })(),
      ));

    it('enters the environment from another node and pushes a change back', () =>
      t.track(
        (async () => {
          const here = await NodeFixture.start(engine);
          try {
            const port = 20000 + Math.floor(Math.random() * 20000);
            await node.killDaemon('SIGTERM');
            await node.startDaemonWith(['--listen', `127.0.0.1:${port}`]);
            const tokenFile = join(node.home, 'token');
            const add = await here.cli(['node', 'add', 'agents', `tcp://127.0.0.1:${port}`, '--token-file', tokenFile]);
            assert.equal(add.code, 0, add.stderr);
            const entered = await here.json<EnvInfo>(['enter', 'agents/ns', '--no-shell', '--as', 'mine']);
            const m = await mapping(here, 'mine');
            assert.deepEqual([m.uid, m.gid], [ids.uid, ids.gid]);
            for (const [path, owner] of owners(await workspaceOf(here, entered))) assert.equal(owner, `${ids.uid}:${ids.gid}`, path);
            const w = await here.cli(['exec', 'mine', '--', 'sh', '-c', 'cat made/deep/f && echo human > HUMAN.md']);
            assert.equal(w.code, 0, w.stderr);
            assert.equal(w.stdout, 'one\n');
            const push = await here.cli(['push', 'mine']);
            assert.equal(push.code, 0, push.stderr);
            const back = await node.cli(['exec', 'ns', '--', 'sh', '-c', 'cat HUMAN.md && stat -c %u HUMAN.md']);
            assert.equal(back.code, 0, back.stderr);
            assert.equal(back.stdout, 'human\n0\n');
          } finally {
            await here.stop(t.failed);
          }
        })(),
      ));
  });
}
