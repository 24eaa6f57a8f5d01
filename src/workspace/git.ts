// Resolves a repository and ref to a commit, keeps a node-side mirror of each repository
// (so commits an environment uses are pinned and never collected), and checks workspaces
// out from that mirror without copying its objects.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { sha256Hex } from '../core/canonical-json.js';
import { BerthError } from '../core/errors.js';
import { isRemoteRepo } from '../core/repo.js';

export interface ResolvedRepo {
  /** What the user gave, normalized: an absolute path or a URL. */
  repo: string;
  remote: boolean;
  commit: string;
  /** The node's mirror of this repository; workspaces borrow its objects. */
  mirror: string;
}

const GIT_ENV = {
  GIT_TERMINAL_PROMPT: '0',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'berth',
  GIT_AUTHOR_EMAIL: 'berth@localhost',
  GIT_COMMITTER_NAME: 'berth',
  GIT_COMMITTER_EMAIL: 'berth@localhost',
};

export function git(args: string[], opts: { cwd?: string; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'git',
      args,
      {
        cwd: opts.cwd,
        signal: opts.signal,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 << 20,
        env: { ...process.env, ...GIT_ENV },
      },
      (err, stdout, stderr) => {
        if (err) {
          const e = new Error(`git ${args[0]}: ${String(stderr).trim().split('\n').pop() || err.message}`) as Error & { stderr: string };
          e.stderr = String(stderr);
          reject(e);
        } else resolvePromise(String(stdout).trim());
      },
    );
  });
}

/** Refs are names or commit ids, never options: `--upload-pack=...` must not reach git. */
export function validateRef(ref: string): void {
  if (
    ref.startsWith('-') ||
    /[\s\u0000-\u001f~^:?*[\\]|\.\.|@\{|\/\/|\.lock$|\/$/.test(ref.replace(/(\^\{commit\}|~\d*|\^\d*)+$/, '')) ||
    ref.length > 256
  ) {
    throw new BerthError('ref_not_found', `invalid ref ${JSON.stringify(ref)}`, 'give a branch, tag or commit id');
  }
}

const locks = new Map<string, Promise<unknown>>();

function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const next = prev.catch(() => {}).then(fn);
  locks.set(key, next);
  void next
    .finally(() => {
      if (locks.get(key) === next) locks.delete(key);
    })
    .catch(() => {});
  return next;
}

export { isRemoteRepo };

export function mirrorPath(cacheRoot: string, repo: string): string {
  const normalized = isRemoteRepo(repo) ? repo : resolve(repo);
  return join(cacheRoot, 'repos', sha256Hex(normalized).slice(0, 24) + '.git');
}

/** Makes the node's mirror for a repository, empty, if it has none. */
export async function ensureMirror(cacheRoot: string, repo: string, signal?: AbortSignal): Promise<string> {
  const mirror = mirrorPath(cacheRoot, repo);
  if (!existsSync(join(mirror, 'HEAD'))) {
    mkdirSync(mirror, { recursive: true });
    await git(['init', '--quiet', '--bare', mirror], { signal });
    await git(['-C', mirror, 'config', 'gc.auto', '0'], { signal });
  }
  return mirror;
}

export async function resolveRepo(repo: string, ref: string | undefined, cacheRoot: string, signal?: AbortSignal): Promise<ResolvedRepo> {
  const remote = isRemoteRepo(repo);
  const normalized = remote ? repo : resolve(repo);
  // A commit the mirror already holds needs no source: environments entered from another
  // node name a repository path that exists only there.
  if (ref && /^[0-9a-f]{40}$/.test(ref)) {
    const mirror = mirrorPath(cacheRoot, repo);
    if (existsSync(join(mirror, 'HEAD')) && (await hasCommit(mirror, ref))) return { repo: normalized, remote, commit: ref, mirror };
  }
  if (!remote) {
    if (!existsSync(normalized) || !statSync(normalized).isDirectory()) {
      throw new BerthError('repo_not_found', `repository ${repo} does not exist`, 'give the path of a git repository or a git URL');
    }
    try {
      await git(['-C', normalized, 'rev-parse', '--git-dir'], { signal });
    } catch {
      throw new BerthError('repo_not_found', `${repo} is not a git repository`, 'run `git init` there, or give another path');
    }
  }
  const mirror = mirrorPath(cacheRoot, normalized);
  const want = ref ?? 'HEAD';
  validateRef(want);
  // One resolution at a time per mirror: concurrent creates and fetches would race on it.
  const commit = await withLock(mirror, async () => {
    await ensureMirror(cacheRoot, normalized, signal);
    let sha: string;
    if (!remote) {
      try {
        sha = await git(['-C', normalized, 'rev-parse', '--verify', '--quiet', '--end-of-options', `${want}^{commit}`], { signal });
      } catch {
        throw new BerthError(
          'ref_not_found',
          `ref ${want} does not exist in ${repo}`,
          'give a branch, tag or commit that exists (git branch -a lists them)',
        );
      }
      if (!(await hasCommit(mirror, sha))) await fetchInto(mirror, normalized, sha, repo, signal);
    } else if (/^[0-9a-f]{40}$/.test(want) && (await hasCommit(mirror, want))) sha = want;
    else {
      const tmp = `refs/berth/fetch/${process.pid}-${Date.now()}`;
      await fetchInto(mirror, normalized, `${want}:${tmp}`, repo, signal, want);
      sha = await git(['-C', mirror, 'rev-parse', `${tmp}^{commit}`], { signal });
      await git(['-C', mirror, 'update-ref', '-d', tmp], { signal });
    }
    // Pin it: the mirror never collects a commit an environment was made from.
    await git(['-C', mirror, 'update-ref', `refs/berth/pins/${sha}`, sha], { signal });
    return sha;
  });
  return { repo: normalized, remote, commit, mirror };
}

/** Whether the mirror holds this commit. */
export async function hasCommit(mirror: string, commit: string): Promise<boolean> {
  try {
    await git(['-C', mirror, 'cat-file', '-e', `${commit}^{commit}`]);
    return true;
  } catch {
    return false;
  }
}

async function fetchInto(
  mirror: string,
  source: string,
  refspec: string,
  shown: string,
  signal?: AbortSignal,
  what = refspec,
): Promise<void> {
  try {
    await git(['-C', mirror, 'fetch', '--quiet', '--no-tags', '--end-of-options', source, refspec], { signal });
  } catch (err) {
    const msg = (err as { stderr?: string }).stderr ?? String(err);
    if (/couldn't find remote ref|not our ref|unadvertised object|invalid refspec|bad object/i.test(msg)) {
      throw new BerthError('ref_not_found', `ref ${what} does not exist in ${shown}`, 'give a branch, tag or commit that exists');
    }
    throw new BerthError(
      'repo_not_found',
      `could not fetch ${shown}: ${msg.trim().split('\n').pop()}`,
      'check the URL and that the node can reach it',
    );
  }
}

/**
 * Checks out `commit` into `dir` on branch `berth/<name>`, borrowing objects from the mirror
 * (git alternates). The mirror is mounted read-only at the same path inside the environment,
 * so git works the same inside and outside.
 */
export async function checkoutWorkspace(r: ResolvedRepo, dir: string, branch: string, signal?: AbortSignal): Promise<void> {
  if (!isAbsolute(dir)) throw new Error('workspace dir must be absolute');
  await git(['clone', '--quiet', '--shared', '--no-checkout', '--no-tags', r.mirror, dir], { signal });
  await git(['-C', dir, 'remote', 'remove', 'origin'], { signal });
  await git(['-C', dir, 'checkout', '--quiet', '-B', branch, r.commit], { signal });
  await git(['-C', dir, 'config', 'user.name', 'berth agent'], { signal });
  await git(['-C', dir, 'config', 'user.email', 'agent@berth.localhost'], { signal });
  await git(['-C', dir, 'config', 'berth.repo', r.repo], { signal });
  await git(['-C', dir, 'config', 'berth.base', r.commit], { signal });
}
