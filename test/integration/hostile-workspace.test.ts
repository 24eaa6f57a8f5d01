// A hostile environment attacking the node through its own workspace: links planted where the
// node reads (HEAD, refs, directories git walks, swapped while a snapshot runs) or writes
// (restore, push, fork), and snapshot manifests imported with paths no workspace can hold.
// The host's files must never reach a snapshot, and nothing may be written outside a workspace.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import type { EnvInfo, SnapshotInfo } from '../../src/core/api.js';

/** What the host holds and no snapshot may: a branch name, a commit id, file contents. */
const CANARY = /CANARY|c0ffee0{34}/;
const CANARY_COMMIT = 'c0ffee' + '0'.repeat(34);
const FILES = 2000;

function apiCall(socketPath: string, method: string, path: string, body?: string | Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers = typeof body === 'string' ? { 'content-type': 'application/json' } : {};
    const req = http.request({ socketPath, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A host directory that looks like a git directory, its HEAD and refs naming the canary. */
function canaryGitDir(root: string): string {
  const dir = join(root, 'canary-git');
  mkdirSync(join(dir, 'refs', 'heads', 'berth'), { recursive: true });
  writeFileSync(join(dir, 'HEAD'), 'ref: refs/heads/CANARYBRANCH\n');
  writeFileSync(join(dir, 'refs', 'heads', 'CANARYBRANCH'), CANARY_COMMIT + '\n');
  for (const n of ['a1', 'a2', 'c', 'cow']) writeFileSync(join(dir, 'refs', 'heads', 'berth', n), CANARY_COMMIT + '\n');
  writeFileSync(join(dir, 'packed-refs'), `${CANARY_COMMIT} refs/heads/CANARYBRANCH\n`);
  return dir;
}

/** A host directory whose files have the names and sizes of the workspace's `d/`, but not its content. */
function canaryFiles(root: string): string {
  const dir = join(root, 'canary-files');
  mkdirSync(dir, { recursive: true });
  for (let i = 1; i <= FILES; i++) writeFileSync(join(dir, `f${i}.txt`), `CANARYX-${String(i).padStart(8, '0')}\n`);
  return dir;
}

/** A commit on top of the repository's main with `FILES` small tracked files under `d/`. */
function addManyFiles(repo: string): string {
  mkdirSync(join(repo, 'd'));
  for (let i = 1; i <= FILES; i++) writeFileSync(join(repo, 'd', `f${i}.txt`), `ordinary${String(i).padStart(8, '0')}\n`);
  const g = (...args: string[]): string =>
    execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { encoding: 'utf8' }).trim();
  g('checkout', '-q', '-b', 'many');
  g('add', '-A');
  g('commit', '-q', '-m', 'many files');
  const sha = g('rev-parse', 'HEAD');
  g('checkout', '-q', 'main');
  return sha;
}

/** A commit on top of main whose tree holds `name`, a link to `target`. */
function commitLink(repo: string, name: string, target: string): string {
  const g = (...args: string[]): string =>
    execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { encoding: 'utf8' }).trim();
  g('checkout', '-q', '-b', `link-${name}`, 'main');
  execFileSync('ln', ['-s', target, join(repo, name)]);
  g('add', '-A');
  g('commit', '-q', '-m', `a link ${name}`);
  const sha = g('rev-parse', 'HEAD');
  g('checkout', '-q', 'main');
  return sha;
}

/** Swaps `d` (a directory) and `d.l` (a link to the host) atomically, as fast as it can, until told to stop. */
const SWAPPER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir('/workspace')
open('/tmp/swap.running', 'w').close()
end = time.time() + 120
n = 0
while time.time() < end and not os.path.exists('/tmp/swap.stop'):
    libc.renameat2(-100, b'd', -100, b'd.l', 2)
    n += 1
if not os.path.islink('d.l'):
    libc.renameat2(-100, b'd', -100, b'd.l', 2)
os.unlink('/tmp/swap.running')
`;

/** Every file in the node's blob store, searched for the canary. */
function storeHolds(home: string, pattern: RegExp): string[] {
  const root = join(home, 'store', 'blobs');
  const hits: string[] = [];
  if (!existsSync(root)) return hits;
  for (const dir of readdirSync(root))
    for (const name of readdirSync(join(root, dir)))
      if (pattern.test(readFileSync(join(root, dir, name)).toString('latin1'))) hits.push(name);
  return hits;
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0]!;
}

function suite(engine: 'podman' | 'docker', extra: Record<string, string>, label: string): void {
  describe(`a hostile workspace on ${label}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let host: string;
    let many = '';
    const tracker = failureTracker();
    const track = tracker.track;
    const sock = (): string => join(node.home, 'berth.sock');
    const manifestOf = async (id: string): Promise<string> => {
      const r = await apiCall(sock(), 'GET', `/v1/snapshots/${id}/manifest`);
      assert.equal(r.status, 200, r.body.toString());
      return r.body.toString('utf8');
    };
    /** The manifest and every blob it names, as text. */
    const snapshotText = async (id: string): Promise<string> => {
      const manifest = await manifestOf(id);
      const blobs = (JSON.parse(manifest) as { entries: Array<{ blob?: string }> }).entries.flatMap((e) => (e.blob ? [e.blob] : []));
      const parts = [manifest];
      for (const b of blobs) parts.push((await apiCall(sock(), 'GET', `/v1/blobs/${b}`)).body.toString('latin1'));
      return parts.join('\n');
    };
    const sh = async (env: string, script: string): Promise<string> => {
      const r = await node.cli(['exec', env, '--', 'sh', '-c', script]);
      assert.equal(r.code, 0, `${script}: ${r.stderr}`);
      return r.stdout;
    };

    before(async () => {
      repo = makeRepo();
      many = addManyFiles(repo.path);
      host = mkdtempSync(join(tmpdir(), 'berth-host-'));
      node = await NodeFixture.start(engine, extra);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
      if (host) rmSync(host, { recursive: true, force: true });
    });

    it('never reads HEAD or refs through a .git the environment replaced with a link', () =>
      track(
        (async () => {
          const git = canaryGitDir(host);
          // The whole .git a link to the host's directory.
          await node.json(['new', 'a1', '--repo', repo.path]);
          await sh('a1', `echo change >> src/index.js && mv .git /tmp/real-git && ln -s ${git} .git`);
          const s1 = await node.json<SnapshotInfo>(['snap', 'a1']);
          const m1 = await manifestOf(s1.id);
          assert.doesNotMatch(m1, CANARY, 'the host HEAD reached the manifest');
          // A link one level down: .git/refs to the host's refs.
          await node.json(['new', 'a2', '--repo', repo.path]);
          await sh('a2', `echo change >> src/index.js && mv .git/refs .git/refs.real && ln -s ${git}/refs .git/refs`);
          const s2 = await node.json<SnapshotInfo>(['snap', 'a2']);
          const m2 = await manifestOf(s2.id);
          assert.doesNotMatch(m2, CANARY, 'a host ref reached the manifest');
          assert.equal((JSON.parse(m2) as { head: { branch: string } }).head.branch, 'berth/a2', 'HEAD itself is still read');
          // With the links gone, the head is read again.
          await sh('a2', 'rm .git/refs && mv .git/refs.real .git/refs');
          const s3 = await node.json<SnapshotInfo>(['snap', 'a2']);
          const head = (JSON.parse(await manifestOf(s3.id)) as { head: { branch: string; commit: string } }).head;
          assert.deepEqual(head, { branch: 'berth/a2', commit: repo.main });
          assert.deepEqual(storeHolds(node.home, CANARY), []);
          await node.cli(['rm', '--discard', 'a1', 'a2']);
        })(),
      ));

    it('never carries host files through a directory swapped for a link while it is read: snapshot, artifacts, fork', (t) =>
      track(
        (async () => {
          const files = canaryFiles(host);
          await node.json(['new', 'b', '--repo', repo.path, '--ref', many]);
          await sh('b', `ln -s ${files} d.l`);
          const put = await node.cli(['exec', 'b', '--', 'sh', '-c', 'cat > /tmp/swap.py'], { stdin: SWAPPER });
          assert.equal(put.code, 0, put.stderr);
          await sh('b', 'python3 /tmp/swap.py >/dev/null 2>&1 &');
          for (let i = 0; i < 100 && (await node.cli(['exec', 'b', '--', 'test', '-e', '/tmp/swap.running'])).code !== 0; i++)
            await sleep(50);
          const taken: string[] = [];
          const leaked: string[] = [];
          const unclear: string[] = [];
          for (let i = 0; i < 8; i++) {
            const r = await node.cli(['snap', 'b', '--json', ...(i % 2 ? ['--artifact', 'd'] : [])]);
            if (r.code !== 0) {
              // Refusing is fine, with one clear line and the conflict code; carrying the host's files is not.
              if (r.code !== 21 || !/^berth: the workspace changed while the snapshot read it[^\n]*\n?$/.test(r.stderr))
                unclear.push(`exit ${r.code}: ${r.stderr.trim()}`);
              continue;
            }
            const s = JSON.parse(r.stdout) as SnapshotInfo;
            taken.push(s.id);
            if (CANARY.test(await snapshotText(s.id))) leaked.push(s.id);
          }
          await sh('b', 'touch /tmp/swap.stop');
          for (let i = 0; i < 200 && (await node.cli(['exec', 'b', '--', 'test', '-e', '/tmp/swap.running'])).code === 0; i++)
            await sleep(50);
          t.diagnostic(`while the environment swapped: ${taken.length} snapshot(s) taken, ${8 - taken.length} refused`);
          assert.deepEqual(leaked, [], `${leaked.length} of ${taken.length} snapshots carried the host's files`);
          assert.deepEqual(unclear, [], 'a refused snapshot must say why, with the conflict code');
          // Now still: `d` is the link, and snapshot and artifact record it as a link.
          assert.equal((await sh('b', 'readlink d.l || readlink d')).trim(), files);
          await sh('b', 'if [ -L d.l ]; then mv d d.real && mv d.l d; fi');
          const still = await node.json<SnapshotInfo>(['snap', 'b', '--artifact', 'd']);
          const text = await snapshotText(still.id);
          assert.doesNotMatch(text, CANARY);
          const d = (JSON.parse(await manifestOf(still.id)) as { entries: Array<{ path: string; kind: string }> }).entries.find(
            (e) => e.path === 'd',
          );
          assert.equal(d?.kind, 'symlink');
          // A fork of each carries the link, never the host's files behind it.
          for (const id of [...taken.slice(-1), still.id]) {
            await node.json<EnvInfo>(['fork', id, 'b-fork']);
            const seen = await node.cli(['exec', 'b-fork', '--', 'sh', '-c', 'cat d/f1.txt d.real/f1.txt d.l/f1.txt 2>/dev/null; true']);
            assert.doesNotMatch(seen.stdout, CANARY, 'a fork carried the host file');
            await node.cli(['rm', '--discard', 'b-fork']);
          }
          assert.deepEqual(storeHolds(node.home, CANARY), []);
          await node.cli(['rm', '--discard', 'b']);
        })(),
      ));

    it('restore, push and fork never write outside the workspace through planted links', () =>
      track(
        (async () => {
          const target = join(host, 'target');
          mkdirSync(target, { recursive: true });
          writeFileSync(join(target, 'marker'), 'host\n');
          const hostView = (): string[] => readdirSync(target).sort();
          const git = canaryGitDir(host);
          const cEnv = await node.json<EnvInfo>(['new', 'c', '--repo', repo.path]);
          const s0 = await node.json<SnapshotInfo>(['snap', 'c']);
          await sh('c', 'mkdir sub && echo written > sub/x.txt && ln -s x.txt sub/l');
          const s1 = await node.json<SnapshotInfo>(['snap', 'c']);
          // `sub` becomes a link to a path that is the host's directory on the node, and exists
          // inside the container too; kept by git clean (ignored).
          await sh('c', `rm -rf sub && mkdir -p ${target} && ln -s ${target} sub && echo sub >> .git/info/exclude`);
          const restored = await node.cli(['restore', 'c', s1.id]);
          assert.equal(restored.code, 0, restored.stderr);
          assert.deepEqual(hostView(), ['marker'], 'restore wrote into the host directory');
          // The workspace is what the snapshot has, as a checkout makes it: `sub` a directory again,
          // and nothing written through the link, even to the container's own copy of the path.
          assert.equal(await sh('c', 'test -d sub && ! test -L sub && cat sub/x.txt && readlink sub/l'), 'written\nx.txt\n');
          assert.equal(await sh('c', `ls -A ${target}`), '', 'restore wrote through the link inside the container');

          // A push applied while the links are there (and .git/refs points at the host).
          await sh('c', `rm -rf sub && ln -s ${target} sub && mv .git/refs .git/refs.real && ln -s ${git}/refs .git/refs`);
          const apply = await apiCall(sock(), 'POST', '/v1/envs/c/apply', JSON.stringify({ since: s0.id, snapshot: s1.id }));
          assert.equal(apply.status, 200, apply.body.toString());
          assert.deepEqual(hostView(), ['marker'], 'push wrote into the host directory');
          for (const s of await node.json<SnapshotInfo[]>(['snapshots']))
            if (s.env === 'c') assert.doesNotMatch(await manifestOf(s.id), CANARY, `snapshot ${s.reason} read the host's refs`);

          // A fork of a snapshot holding that link gets the link, and writes nothing through it.
          await sh('c', 'rm .git/refs && mv .git/refs.real .git/refs');
          const s2 = await node.json<SnapshotInfo>(['snap', 'c']);
          await node.json(['fork', s2.id, 'c-fork']);
          assert.equal((await sh('c-fork', 'readlink sub')).trim(), target);
          // Here the link dangles (the path exists only in c's container): restore still makes `sub`.
          const r = await node.cli(['restore', 'c-fork', s1.id]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(await sh('c-fork', 'test -d sub && ! test -L sub && cat sub/x.txt'), 'written\n');
          assert.deepEqual(hostView(), ['marker'], 'fork or restore wrote into the host directory');
          await node.cli(['rm', '--discard', 'c', 'c-fork']);

          // A link committed in the repository itself, and a snapshot that writes beneath it:
          // the fork refuses it, and the host directory stays as it was.
          const linked = commitLink(repo.path, 'committed', target);
          const blob = createHash('sha256').update('through\n').digest('hex');
          assert.ok((await apiCall(sock(), 'PUT', `/v1/blobs/${blob}`, Buffer.from('through\n'))).status < 300);
          const m = Buffer.from(
            JSON.stringify({
              version: 1,
              base: linked,
              head: { branch: null, commit: null },
              entries: [{ path: 'committed/x.txt', kind: 'file', blob, size: 8 }],
            }),
          );
          const id = `sha256:${createHash('sha256').update(m).digest('hex')}`;
          assert.ok((await apiCall(sock(), 'PUT', `/v1/blobs/${id.slice(7)}`, m)).status < 300);
          const imported = await apiCall(
            sock(),
            'POST',
            '/v1/snapshots/import',
            JSON.stringify({ id, repo: cEnv.repo, toolchain: cEnv.toolchain }),
          );
          assert.equal(imported.status, 201, imported.body.toString());
          const through = await node.cli(['fork', id, 'c-through']);
          assert.equal(through.code, 19, through.stderr);
          assert.match(oneLine(through.stderr), /writes through a symlink at committed/);
          assert.deepEqual(hostView(), ['marker'], 'a fork wrote through a committed link');
        })(),
      ));

    it('refuses imported manifests that no fork could apply, naming the path, and records nothing', () =>
      track(
        (async () => {
          const env = await node.json<EnvInfo>(['new', 'imp', '--repo', repo.path]);
          const put = async (data: Buffer): Promise<string> => {
            const hash = createHash('sha256').update(data).digest('hex');
            const r = await apiCall(sock(), 'PUT', `/v1/blobs/${hash}`, data);
            assert.ok(r.status === 201 || r.status === 200, r.body.toString());
            return hash;
          };
          const hello = await put(Buffer.from('hello\n'));
          const nul = await put(Buffer.from('a\0b'));
          const file = (path: unknown, more: Record<string, unknown> = {}): Record<string, unknown> => ({
            path,
            kind: 'file',
            blob: hello,
            size: 6,
            ...more,
          });
          const head = { branch: null, commit: null };
          const manifest = (entries: unknown, more: Record<string, unknown> = {}): Record<string, unknown> => ({
            version: 1,
            base: repo.main,
            head,
            entries,
            ...more,
          });
          const cases: Array<[string, Record<string, unknown>, RegExp]> = [
            ['a climbing path', manifest([file('../escape.txt')]), /"\.\.\/escape\.txt"/],
            ['a climbing path inside', manifest([file('src/../../escape.txt')]), /"src\/\.\.\/\.\.\/escape\.txt"/],
            ['an absolute path', manifest([file('/etc/cron.d/x')]), /"\/etc\/cron\.d\/x"/],
            ['a hook', manifest([file('.git/hooks/post-checkout', { kind: 'exec' })]), /"\.git\/hooks\/post-checkout"/],
            ['a nested .git', manifest([file('sub/.git/config')]), /"sub\/\.git\/config"/],
            ['.git in another case', manifest([file('.GIT/config')]), /"\.GIT\/config"/],
            ['an empty path', manifest([file('')]), /""/],
            ['a path that is not a string', manifest([file(7)]), /path/],
            ['a path with a NUL', manifest([file('a\0b')]), /a\\u0000b/],
            ['a path not in normal form', manifest([file('src//index.js')]), /"src\/\/index\.js"/],
            ['an unknown kind', manifest([file('dev', { kind: 'device' })]), /"dev"/],
            ['a blob that is not a hash', manifest([file('x.txt', { blob: '../../etc/passwd' })]), /"x\.txt"/],
            ['a file without a blob', manifest([{ path: 'x.txt', kind: 'file' }]), /"x\.txt"/],
            ['a deletion with a blob', manifest([{ path: 'x.txt', kind: 'deleted', blob: hello }]), /"x\.txt"/],
            ['a duplicate path', manifest([file('x.txt'), file('x.txt')]), /"x\.txt"/],
            ['a write beneath a link', manifest([{ path: 'sub', kind: 'symlink', blob: hello }, file('sub/x.txt')]), /"sub\/x\.txt"/],
            ['a link whose target is not plain text', manifest([{ path: 'l', kind: 'symlink', blob: nul }]), /"l"/],
            ['an unknown field', manifest([file('x.txt', { mode: 0o4755 })]), /"x\.txt"/],
            ['entries that are not a list', manifest({ 'x.txt': hello }), /entries/],
            ['a head that is not a commit', manifest([file('x.txt')], { head: { branch: 'main', commit: '$(reboot)' } }), /head/],
            ['another version', manifest([file('x.txt')], { version: 2 }), /version/],
          ];
          const before = (await node.json<SnapshotInfo[]>(['snapshots'])).length;
          for (const [what, m, names] of cases) {
            const id = `sha256:${await put(Buffer.from(JSON.stringify(m)))}`;
            const r = await apiCall(
              sock(),
              'POST',
              '/v1/snapshots/import',
              JSON.stringify({ id, repo: env.repo, toolchain: env.toolchain, reason: 'imported' }),
            );
            const body = JSON.parse(r.body.toString('utf8')) as { error?: { code: string; message: string } };
            assert.equal(r.status, 422, `${what}: ${r.body.toString()}`);
            assert.equal(body.error?.code, 'corrupt', what);
            assert.match(body.error?.message ?? '', names, `${what}: the message names what is wrong`);
            assert.ok(!body.error?.message.includes('\n'), `${what}: one line`);
            assert.equal((await apiCall(sock(), 'GET', `/v1/snapshots/${id}`)).status, 404, `${what}: recorded anyway`);
            if (what === 'a climbing path' || what === 'a write beneath a link') {
              const fork = await node.cli(['fork', id, 'imp-fork']);
              assert.equal(fork.code, 19, `${what}: ${fork.stderr}`);
              assert.match(oneLine(fork.stderr), /^berth: snapshot .*(unsafe path|beneath the link)/);
            }
          }
          assert.equal((await node.json<SnapshotInfo[]>(['snapshots'])).length, before, 'nothing was recorded');
          // A sound manifest still imports and forks.
          const good = `sha256:${await put(Buffer.from(JSON.stringify(manifest([file('imported/hello.txt')]))))}`;
          const ok = await apiCall(
            sock(),
            'POST',
            '/v1/snapshots/import',
            JSON.stringify({ id: good, repo: env.repo, toolchain: env.toolchain }),
          );
          assert.equal(ok.status, 201, ok.body.toString());
          await node.json(['fork', good, 'imp-fork']);
          assert.equal(await sh('imp-fork', 'cat imported/hello.txt'), 'hello\n');
          await node.cli(['rm', '--discard', 'imp', 'imp-fork']);
        })(),
      ));
  });
}

for (const engine of testEngines()) suite(engine, {}, engine);

// Copy-on-write storage freezes the tree before it is read, and forks from the frozen tree.
const first = testEngines()[0];
if (first) {
  describe(`a hostile workspace on ${first} with btrfs storage`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let host: string;
    before(async () => {
      repo = makeRepo();
      host = mkdtempSync(join(tmpdir(), 'berth-host-'));
      node = await NodeFixture.start(first, { BERTH_STORAGE: 'btrfs', BERTH_STORAGE_GB: '2' });
    });
    after(async () => {
      await node?.stop();
      repo?.cleanup();
      if (host) rmSync(host, { recursive: true, force: true });
    });

    it('reads neither the host HEAD nor the host files behind planted links, and forks carry only the links', async () => {
      const git = canaryGitDir(host);
      const files = canaryFiles(host);
      await node.json(['new', 'cow', '--repo', repo.path]);
      const r = await node.cli([
        'exec',
        'cow',
        '--',
        'sh',
        '-c',
        `echo change >> src/index.js && mv src/index.js src.js && rm -rf src && ln -s ${files} src && mv .git /tmp/real-git && ln -s ${git} .git`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const s = await node.json<SnapshotInfo>(['snap', 'cow', '--artifact', 'src']);
      const sockPath = join(node.home, 'berth.sock');
      const manifest = (await apiCall(sockPath, 'GET', `/v1/snapshots/${s.id}/manifest`)).body.toString('utf8');
      assert.doesNotMatch(manifest, CANARY);
      assert.deepEqual(storeHolds(node.home, CANARY), []);
      // The fork is the frozen tree itself: its git must work, so .git comes back first.
      assert.equal((await node.cli(['exec', 'cow', '--', 'sh', '-c', 'rm .git && mv /tmp/real-git .git'])).code, 0);
      const t = await node.json<SnapshotInfo>(['snap', 'cow']);
      assert.doesNotMatch((await apiCall(sockPath, 'GET', `/v1/snapshots/${t.id}/manifest`)).body.toString('utf8'), CANARY);
      await node.json(['fork', t.id, 'cow2']);
      const seen = await node.cli(['exec', 'cow2', '--', 'sh', '-c', 'readlink src; cat src/f1.txt 2>/dev/null; true']);
      assert.equal(seen.stdout.trim(), files);
      await node.cli(['rm', '--discard', 'cow', 'cow2']);
    });
  });
}
