// What the page asks of an environment, each through the SDK: the diff of its work, its
// description, live service logs, and the verbs behind the page's buttons.
import type http from 'node:http';
import { z } from 'zod';
import { BerthError } from '../core/errors.js';
import { HandbackRequest, TakeoverRequest } from '../core/supervision.js';
import { defaultHolder } from '../sdk/holder.js';
import { diffArgv } from './own-commands.js';
import type { Sources } from './sources.js';

const DIFF_MAX = 512 * 1024;

/** The change since its commit: tracked files against the commit, and untracked ones as new. */
export async function diff(sources: Sources, key: string): Promise<{ diff: string; truncated: boolean }> {
  const env = await sources.env(key);
  // The exact command line keeps the dashboard's own command out of the agent's activity.
  const r = await env.exec(diffArgv(env.info.commit), { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new BerthError('internal', `git diff failed: ${r.stderr.trim().split('\n')[0] ?? ''}`);
  const truncated = r.stdout.length > DIFF_MAX;
  return { diff: truncated ? r.stdout.slice(0, DIFF_MAX) : r.stdout, truncated };
}

export const ActionBody = z
  .object({ note: z.string().optional(), exclusive: z.boolean().optional(), discard: z.boolean().optional() })
  .strict();

/** A button's verb; the answer is the environment as it is now (or what was removed). */
export async function act(sources: Sources, key: string, verb: string, body: z.infer<typeof ActionBody>): Promise<unknown> {
  const env = await sources.env(key);
  switch (verb) {
    case 'pause':
      return env.pause();
    case 'resume':
      return env.resume();
    case 'snapshot':
      return env.snapshot();
    case 'remove':
      return env.remove({ discard: body.discard });
    case 'takeover': {
      const req = TakeoverRequest.parse({ exclusive: body.exclusive, note: body.note || undefined });
      return env.takeover({ ...req, holder: `${defaultHolder()} (dashboard)` });
    }
    case 'handback':
      return env.handback(HandbackRequest.parse({ note: body.note || undefined }));
    default:
      throw new BerthError('not_found', `no such action ${verb}`);
  }
}

/** A service's log as server-sent events: its tail, then new output until the page closes it. */
export async function streamLogs(
  sources: Sources,
  key: string,
  service: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const env = await sources.env(key);
  const stop = new AbortController();
  req.on('close', () => stop.abort());
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  res.write(': logs\n\n');
  const send = (event: string, data: unknown): void => {
    if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  try {
    await env.services.logs(service, {
      follow: true,
      tailBytes: 32 * 1024,
      signal: stop.signal,
      onData: (c) => send('data', c.toString('utf8')),
    });
    send('end', {});
  } catch (err) {
    send('failed', { message: (err as Error).message });
  }
  res.end();
}
