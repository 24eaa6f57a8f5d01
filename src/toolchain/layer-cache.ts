// Uncompressed image layers kept by digest on the node, so a layer it already has (a base it
// built, or one pulled before) is never transferred again.
import { existsSync, linkSync, mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from './base-image.js';

export function layerDir(env: NodeJS.ProcessEnv = process.env): string {
  const d = join(cacheDir(env), 'layers');
  mkdirSync(d, { recursive: true });
  return d;
}

export function layerPath(diffId: string): string {
  return join(layerDir(), `${diffId.replace(/^sha256:/, '')}.tar`);
}

export function hasLayer(diffId: string): boolean {
  return existsSync(layerPath(diffId));
}

export function linkLayer(file: string, diffId: string): void {
  const dest = layerPath(diffId);
  if (existsSync(dest)) return;
  try {
    linkSync(file, dest);
  } catch {
    copyFileSync(file, dest);
  }
}
