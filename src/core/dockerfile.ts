// A Dockerfile as a list of steps (instruction, line, text), and per-step cache keys, so
// `--explain` can say why a step was rebuilt: its line changed, the files it copies changed, a
// build argument changed, or a step above it was rebuilt.
import { sha256Hex } from './canonical-json.js';

export interface DockerfileStep {
  /** 1-based line of the instruction's first line. */
  line: number;
  /** Upper case: FROM, RUN, COPY, … */
  keyword: string;
  /** The instruction as one line (continuations joined). */
  text: string;
}

export function parseDockerfile(text: string): DockerfileStep[] {
  const steps: DockerfileStep[] = [];
  const lines = text.split(/\r?\n/);
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    const line = i + 1;
    i++;
    if (!trimmed || trimmed.startsWith('#')) continue;
    let joined = trimmed;
    while (joined.endsWith('\\') && i < lines.length) {
      joined = joined.slice(0, -1).trimEnd();
      const next = lines[i]!.trim();
      i++;
      if (next.startsWith('#')) continue;
      if (next) joined += ' ' + next;
    }
    const m = /^(\S+)\s*(.*)$/.exec(joined)!;
    steps.push({ line, keyword: m[1]!.toUpperCase(), text: `${m[1]!.toUpperCase()} ${m[2]!}`.trim() });
  }
  return steps;
}

/** The images a Dockerfile starts from (not its own stages, not `scratch`), with ARG defaults substituted. */
export function baseImages(steps: DockerfileStep[], args: Record<string, string>): string[] {
  const stages = new Set<string>();
  const values: Record<string, string> = {};
  const out: string[] = [];
  for (const s of steps) {
    if (s.keyword === 'ARG' && out.length === 0) {
      const m = /^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/.exec(s.text);
      if (m) values[m[1]!] = args[m[1]!] ?? unquote(m[2] ?? '');
    }
    if (s.keyword !== 'FROM') continue;
    const parts = s.text.split(/\s+/).slice(1);
    const image = parts.find((p) => !p.startsWith('--'));
    if (!image) continue;
    const as = parts.findIndex((p) => p.toLowerCase() === 'as');
    const resolved = image.replace(
      /\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}?/g,
      (_w, n: string, d?: string) => values[n] ?? args[n] ?? d ?? '',
    );
    if (!stages.has(resolved) && resolved !== 'scratch' && !out.includes(resolved)) out.push(resolved);
    if (as >= 0 && parts[as + 1]) stages.add(parts[as + 1]!);
  }
  return out;
}

function unquote(s: string): string {
  return s.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
}

/** The sources a COPY or ADD takes from the build context (none for `--from=`). */
export function copySources(step: DockerfileStep): string[] {
  if (step.keyword !== 'COPY' && step.keyword !== 'ADD') return [];
  const parts = step.text.split(/\s+/).slice(1);
  if (parts.some((p) => p.startsWith('--from='))) return [];
  const plain = parts.filter((p) => !p.startsWith('--'));
  if (plain[0]?.startsWith('[')) {
    try {
      const arr = JSON.parse(plain.join(' ')) as string[];
      return arr.slice(0, -1);
    } catch {
      return [];
    }
  }
  return plain.slice(0, -1);
}

export interface StepKey {
  line: number;
  text: string;
  /** Hash of what the step reads from the context (COPY, ADD), or "". */
  files: string;
  /** The build arguments the step's text names, with their values. */
  args: Record<string, string>;
  key: string;
}

/** Chained keys: a step's key covers its text, its files, its arguments, and every step above. */
export function stepKeys(steps: DockerfileStep[], args: Record<string, string>, filesOf: (s: DockerfileStep) => string): StepKey[] {
  let prev = '';
  return steps.map((s) => {
    const used: Record<string, string> = {};
    for (const [k, v] of Object.entries(args)) if (new RegExp(`\\$\\{?${k}\\b`).test(s.text) || s.text.startsWith(`ARG ${k}`)) used[k] = v;
    const files = filesOf(s);
    const key = sha256Hex(JSON.stringify([prev, s.text, files, used]));
    prev = key;
    return { line: s.line, text: s.text, files, args: used, key };
  });
}

/** Why a step missed the cache, against the keys of the file's last build on this node. */
export function whyMissed(i: number, now: StepKey[], before: StepKey[] | undefined, missedAbove: number | undefined): string {
  if (!before) return 'first build of this file on this node';
  const a = now[i]!;
  const b = before[i];
  if (!b) return 'a new step';
  if (a.text !== b.text) return `line ${a.line} changed (was: ${b.text.slice(0, 80)})`;
  if (a.files !== b.files) return 'the files it copies changed';
  const changed = Object.keys({ ...a.args, ...b.args }).filter((k) => a.args[k] !== b.args[k]);
  if (changed.length) return `build argument ${changed.join(', ')} changed`;
  if (missedAbove !== undefined) return `the step at line ${missedAbove} above it was rebuilt`;
  return "not in the engine's cache any more";
}
