// The contract as the client checks answers against it: the shapes the build wrote from the
// zod schemas (core/shape.ts says why), read once. Without that file (the sources compiled by
// tsc alone), the same table is made from the schemas themselves, which loads zod.
import { readFileSync } from 'node:fs';
import { typedError } from '../core/errors.js';
import { checkShape, type Shape, type ShapeTable } from '../core/shape.js';

const FILE = new URL('../core/contract-shapes.json', import.meta.url);

let table: Promise<ShapeTable> | undefined;

export function contractShapes(): Promise<ShapeTable> {
  return (table ??= load());
}

async function load(): Promise<ShapeTable> {
  let text: string;
  try {
    // Synchronous: one small file, read before the first request anyway.
    text = readFileSync(FILE, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return (await import('../core/shape-of-zod.js')).shapeTable();
  }
  return JSON.parse(text) as ShapeTable;
}

/** `value` as the contract gives it back; an internal error naming the first mismatch otherwise. */
export function checked(shape: Shape, value: unknown, what: string): unknown {
  const r = checkShape(shape, value);
  if (r.ok) return r.value;
  throw typedError(
    'internal',
    `${what} does not match the contract (${r.path.join('.')}: ${r.message})`,
    'the node and this client are different versions; upgrade the older one',
  );
}
