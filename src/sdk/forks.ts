// Several forks of one snapshot at once: all of them, or none.
import type { CreatedEnv, CreateEnvRequest } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import type { NodeClient } from '../client/client.js';

/**
 * Makes one environment per name from `snapshot`, all at the same time. If any of them fails,
 * the ones already made are removed (no snapshot: they hold nothing of their own yet) and the
 * first error is thrown, so a caller never has to clean up a partial set.
 */
export async function forkMany(
  client: NodeClient,
  snapshot: string,
  names: string[],
  opts: Omit<CreateEnvRequest, 'name' | 'snapshot'> = {},
  signal?: AbortSignal,
): Promise<CreatedEnv[]> {
  if (names.length === 0) throw new BerthError('usage', 'name at least one fork');
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new BerthError('usage', `fork name ${dup} is given twice`);
  const full = (await client.snapshots(signal)).filter((s) =>
    s.id.startsWith(snapshot.startsWith('sha256:') ? snapshot : `sha256:${snapshot}`),
  );
  if (full.length > 1) throw new BerthError('invalid_request', `snapshot prefix ${snapshot} is ambiguous`, 'give more digits');
  const id = full[0]?.id ?? snapshot;
  const made = await Promise.allSettled(names.map((name) => client.createEnv({ ...opts, name, snapshot: id }, signal)));
  const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return made.map((r) => (r as PromiseFulfilledResult<CreatedEnv>).value);
  const undo = made.flatMap((r) =>
    r.status === 'fulfilled' ? [client.removeEnv(r.value.name, { discard: true }).catch(() => undefined)] : [],
  );
  await Promise.all(undo);
  throw failed.reason;
}
