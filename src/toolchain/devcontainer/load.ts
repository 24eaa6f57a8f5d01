// Finding and reading a devcontainer.json on the node's disk: the file, the folder it belongs
// to (for `${localWorkspaceFolder}`), and berth's reading of it (src/core/devcontainer.ts).
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { readDevcontainer, type Devcontainer } from '../../core/devcontainer.js';
import { lineOf, offsetOf, parseDevcontainerText } from '../../core/devcontainer-text.js';
import { BerthError } from '../../core/errors.js';

export interface LoadedDevcontainer {
  /** The absolute path of the file. */
  file: string;
  /** The directory the file's relative paths start from. */
  dir: string;
  /** The folder the file configures (`${localWorkspaceFolder}`). */
  workspaceFolder: string;
  config: Devcontainer;
  /** The path shown in messages. */
  shown: string;
  text: string;
}

/** The line of a field of the file (its key), for messages about it. */
export function lineOfField(dc: LoadedDevcontainer, fieldPath: string[]): number {
  const { src } = parseDevcontainerText(dc.shown, dc.text);
  return lineOf(dc.text, offsetOf(src, fieldPath, true)).line;
}

/** The devcontainer.json a path names: the file itself, or a folder's `.devcontainer/devcontainer.json` or `.devcontainer.json`. */
export async function findDevcontainer(p: string): Promise<string> {
  const abs = path.resolve(p);
  const st = await stat(abs).catch(() => null);
  if (!st)
    throw new BerthError(
      'invalid_devcontainer',
      `${p}: no such file`,
      'name a devcontainer.json, or a folder with .devcontainer/devcontainer.json',
    );
  if (st.isFile()) return abs;
  for (const c of ['.devcontainer/devcontainer.json', '.devcontainer.json']) {
    const f = path.join(abs, c);
    if ((await stat(f).catch(() => null))?.isFile()) return f;
  }
  throw new BerthError('invalid_devcontainer', `${p}: holds no .devcontainer/devcontainer.json or .devcontainer.json`);
}

/** The folder a devcontainer.json configures: the parent of `.devcontainer/`, or the file's own folder. */
export function workspaceFolderOf(file: string): string {
  const dir = path.dirname(file);
  return path.basename(dir) === '.devcontainer' ? path.dirname(dir) : dir;
}

export async function loadDevcontainer(
  p: string,
  opts: { workspaceFolder?: string; env?: NodeJS.ProcessEnv; allowPrivileged?: boolean; shownAs?: string } = {},
): Promise<LoadedDevcontainer> {
  const file = await findDevcontainer(p);
  const text = await readFile(file, 'utf8');
  if (text.length > 1 << 20) throw new BerthError('invalid_devcontainer', `${p}: larger than 1 MiB`);
  const workspaceFolder = opts.workspaceFolder ? path.resolve(opts.workspaceFolder) : workspaceFolderOf(file);
  const given = path.resolve(p);
  const shown = opts.shownAs
    ? given === file
      ? opts.shownAs
      : path.join(opts.shownAs, path.relative(given, file))
    : path.relative(process.cwd(), file);
  const as = shown.startsWith('..') || shown === '' ? file : shown;
  const config = readDevcontainer(as, text, {
    localWorkspaceFolder: workspaceFolder,
    localEnv: opts.env ?? process.env,
    allowPrivileged: opts.allowPrivileged ?? process.env.BERTH_ALLOW_PRIVILEGED === '1',
  });
  return { file, dir: path.dirname(file), workspaceFolder, config, shown: as, text };
}
