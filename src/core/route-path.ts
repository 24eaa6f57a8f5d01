// Filling a route's path, apart from the contract's schemas (a client needs only this).

/** A route's path with its parameters filled in (each encoded as one segment). */
export function fillPath(path: string, params: Record<string, string | number>): string {
  return path.replace(/\{(\w+)\}/g, (_, p: string) => {
    const v = params[p];
    if (v === undefined) throw new Error(`missing path parameter ${p}`);
    return encodeURIComponent(String(v));
  });
}
