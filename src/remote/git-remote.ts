// Commits move between nodes with git's own transport, carried by berth: the fetching node
// runs `git fetch ext::…`, whose helper (`berth git-upload-pack`) runs `git upload-pack` in
// the remote environment through the node API. No shared git server is needed.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { BerthError } from '../core/errors.js';
import { ensureMirror, git } from '../workspace/git.js';

export const FetchRequest = z
  .object({
    repo: z.string().min(1).max(4096),
    commits: z
      .array(z.string().regex(/^[0-9a-f]{40}$/))
      .min(1)
      .max(16),
    remote: z
      .object({
        url: z.string().max(2048),
        token: z.string().max(4096).optional(),
        ca: z.string().max(65_536).optional(),
        env: z.string().max(63),
      })
      .strict(),
  })
  .strict();
export type FetchRequest = z.infer<typeof FetchRequest>;

const CLI = resolve(fileURLToPath(import.meta.url), '..', '..', 'cli', 'main.js');

export async function fetchFromEnv(cacheRoot: string, req: FetchRequest): Promise<{ fetched: string[]; present: string[] }> {
  const mirror = await ensureMirror(cacheRoot, req.repo);
  const present: string[] = [];
  const want: string[] = [];
  for (const c of req.commits) {
    try {
      await git(['-C', mirror, 'cat-file', '-e', `${c}^{commit}`]);
      present.push(c);
    } catch {
      want.push(c);
    }
  }
  if (want.length) {
    const helper = `ext::${process.execPath} ${CLI} git-upload-pack %S`;
    await new Promise<void>((resolvePromise, reject) => {
      execFile(
        'git',
        [
          '-c',
          'protocol.ext.allow=always',
          '-C',
          mirror,
          'fetch',
          '--quiet',
          '--no-tags',
          helper,
          ...want.map((c) => `+${c}:refs/berth/pins/${c}`),
        ],
        {
          timeout: 600_000,
          maxBuffer: 16 << 20,
          env: {
            ...process.env,
            GIT_TERMINAL_PROMPT: '0',
            BERTH_UPLOAD_URL: req.remote.url,
            BERTH_UPLOAD_TOKEN: req.remote.token ?? '',
            BERTH_UPLOAD_CA: req.remote.ca ?? '',
            BERTH_UPLOAD_ENV: req.remote.env,
          },
        },
        (err, _out, stderr) => {
          if (!err) return resolvePromise();
          const msg =
            String(stderr)
              .trim()
              .split('\n')
              .map((l) => l.replace(/^(fatal|error): /, '').trim())
              .filter(Boolean)
              .slice(-3)
              .join('; ') || err.message;
          reject(
            new BerthError(
              /unreachable|ECONNREFUSED|no berth daemon/.test(msg) ? 'daemon_unreachable' : 'repo_not_found',
              `could not fetch from ${req.remote.env}: ${msg}`,
            ),
          );
        },
      );
    });
  }
  return { fetched: want, present };
}
