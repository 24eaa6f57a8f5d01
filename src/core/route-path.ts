// Filling a route's path, apart from the contract's schemas (a client needs only this).
import { BerthError } from './errors.js';

/** A route's path with its parameters filled in (each encoded as one segment). */
export function fillPath(path: string, params: Record<string, string | number>): string {
  return path.replace(/\{(\w+)\}/g, (_, p: string) => {
    const v = params[p];
    if (v === undefined) throw new Error(`missing path parameter ${p}`);
    try {
      return encodeURIComponent(String(v));
    } catch {
      // A lone UTF-16 surrogate has no UTF-8 form: no name on any node can hold one.
      throw new BerthError('invalid_request', `the ${p} ${JSON.stringify(String(v)).slice(0, 80)} is not valid text`);
    }
  });
}
