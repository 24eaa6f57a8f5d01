// What the API server says, as one line a user can act on, with berth's stable codes. Each
// message names the cause: the missing verbs, the namespace, the image, the quota.
import { BerthError } from '../../core/errors.js';

interface Status {
  message?: string;
  reason?: string;
  details?: { name?: string; kind?: string };
}

/** The HTTP status and the API server's Status object of a failed call, when it is one. */
export function apiFailure(err: unknown): { code: number; status: Status } | null {
  if (!err || typeof err !== 'object' || !('code' in err) || typeof err.code !== 'number') return null;
  const code = (err as { code: number }).code;
  if (code < 100 || code > 599) return null;
  let body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body) as unknown;
    } catch {
      body = { message: body };
    }
  }
  return { code, status: body && typeof body === 'object' ? body : {} };
}

/** A failed API call as a BerthError; `what` says what berth was doing ("creating Pod x"). */
export function kubeError(err: unknown, what: string, ctx: { namespace: string }): BerthError {
  if (err instanceof BerthError) return err;
  const f = apiFailure(err);
  if (!f) {
    const msg = err instanceof Error ? err.message : String(err);
    const cause = /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|socket hang up|ECONNRESET/.test(msg)
      ? 'the API server is unreachable'
      : msg;
    return new BerthError('engine_unavailable', `${what}: ${cause}`, "check the kubeconfig's server, and that the cluster is up");
  }
  const message = f.status.message ?? `HTTP ${f.code}`;
  if (f.code === 401)
    return new BerthError(
      'unauthorized',
      `${what}: the API server refused the kubeconfig's credentials`,
      'renew the token or certificate in the kubeconfig',
    );
  if (f.code === 403 && /exceeded quota/i.test(message))
    return new BerthError(
      'quota_exceeded',
      `${what}: ${message}`,
      `raise the ResourceQuota in namespace ${ctx.namespace}, or remove environments`,
    );
  if (f.code === 403)
    return new BerthError(
      'forbidden',
      `${what}: ${message}`,
      `grant the kubeconfig's user the verbs docs/kubernetes.md lists, in namespace ${ctx.namespace}`,
    );
  if (f.code === 404 && f.status.details?.kind === 'namespaces')
    return new BerthError(
      'not_found',
      `namespace ${ctx.namespace} does not exist`,
      `create it (kubectl create namespace ${ctx.namespace}), or give another --namespace`,
    );
  if (f.code === 404) return new BerthError('not_found', `${what}: ${message}`);
  if (f.code === 409) return new BerthError('conflict', `${what}: ${message}`);
  if (f.code === 422 || f.code === 400) return new BerthError('invalid_request', `${what}: ${message}`);
  return new BerthError('engine_unavailable', `${what}: ${message}`);
}
