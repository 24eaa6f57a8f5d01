// Running a program that walks a tree the environment can rewrite while it runs (git reading a
// workspace during a snapshot). git never follows a link it has seen, but between its lstat of
// `dir` and its open of `dir/file` the environment can make `dir` a link to the host's /etc.
// So the program runs in a private mount namespace where the tree is bind-mounted over itself
// with `nosymfollow`: inside it, no path resolution through any link in the tree succeeds
// (ELOOP), while readlink still works, so links are recorded as links. The namespace, and the
// mount, go with the process.
import { execFile } from 'node:child_process';
import { BerthError } from '../core/errors.js';

/** Exit status of the wrapper when the confinement itself could not be set up. */
const SETUP_FAILED = 97;
// One mount(8) call: it binds, then sets nosymfollow on the new mount (one exec fewer than two calls).
const SETUP = `mount --bind -o nosymfollow "$1" "$1" || exit ${SETUP_FAILED}; shift; exec "$@"`;

export interface TreeRunFailure extends Error {
  stderr: string;
  exitCode: number | null;
}

/**
 * Runs `argv` with every path resolution inside `tree` unable to follow a link. `tree` is the
 * node's own absolute path (the environment cannot replace it: it is the bind mount's source).
 */
export function runConfinedToTree(
  tree: string,
  argv: string[],
  opts: { env: NodeJS.ProcessEnv; signal?: AbortSignal; maxBuffer?: number },
): Promise<Buffer> {
  if (!tree.startsWith('/')) return Promise.reject(new Error('a confined tree must be an absolute path'));
  return new Promise((resolve, reject) => {
    execFile(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', SETUP, 'berth-confine', tree, ...argv],
      { env: opts.env, encoding: 'buffer', maxBuffer: opts.maxBuffer ?? 256 << 20, signal: opts.signal },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const raw = (err as { code?: unknown }).code;
        const code = typeof raw === 'number' ? raw : null;
        const text = stderr.toString('utf8');
        if (code === SETUP_FAILED || raw === 'ENOENT') {
          return reject(
            new BerthError(
              'internal',
              `could not confine the snapshot to the workspace: ${lastLine(text) || err.message}`,
              'the node must run as root on Linux 5.10 or later (mount option nosymfollow), with util-linux unshare and mount',
            ),
          );
        }
        const failure: TreeRunFailure = Object.assign(new Error(lastLine(text) || err.message), { stderr: text, exitCode: code });
        reject(failure);
      },
    );
  });
}

export function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}
