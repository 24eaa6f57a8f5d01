// devcontainer.json as text: JSONC (comments, trailing commas) parsed with positions, so every
// error names its file and line, and the variables the devcontainers CLI substitutes.
import { parse, parseTree, findNodeAtLocation, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import { BerthError } from './errors.js';

export interface DevcontainerText {
  /** The path shown in messages (as the user gave it). */
  file: string;
  text: string;
  tree: Node | undefined;
}

/** 1-based line and column of an offset. */
export function lineOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** An `invalid_devcontainer` error at `file:line`. */
export function errorAt(src: DevcontainerText, offset: number, message: string, hint?: string): BerthError {
  const { line } = lineOf(src.text, offset);
  return new BerthError('invalid_devcontainer', `${src.file}:${line}: ${message}`, hint);
}

/** The offset of the value (or of its key, `key: true`) at a JSON path, or 0. */
export function offsetOf(src: DevcontainerText, path: (string | number)[], key = false): number {
  if (!src.tree) return 0;
  const node = findNodeAtLocation(src.tree, path);
  if (!node) return path.length > 1 ? offsetOf(src, path.slice(0, -1), key) : 0;
  if (key && node.parent?.type === 'property' && node.parent.children?.[0]) return node.parent.children[0].offset;
  return node.offset;
}

/** Parses JSONC as the devcontainers CLI does: comments and trailing commas allowed, anything else an error. */
export function parseDevcontainerText(file: string, text: string): { src: DevcontainerText; value: Record<string, unknown> } {
  const errors: ParseError[] = [];
  const value: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false });
  const src: DevcontainerText = { file, text, tree: undefined };
  const first = errors[0];
  if (first) throw errorAt(src, first.offset, `invalid JSONC: ${describeParseError(printParseErrorCode(first.error))}`);
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw errorAt(src, 0, 'a devcontainer.json holds one object', 'wrap the properties in { }');
  src.tree = parseTree(text, [], { allowTrailingComma: true, disallowComments: false });
  return { src, value: value as Record<string, unknown> };
}

function describeParseError(code: string): string {
  const words: Record<string, string> = {
    InvalidSymbol: 'an unexpected character',
    InvalidNumberFormat: 'a malformed number',
    PropertyNameExpected: 'a property name was expected',
    ValueExpected: 'a value was expected',
    ColonExpected: 'a colon was expected',
    CommaExpected: 'a comma was expected',
    CloseBraceExpected: 'a } was expected',
    CloseBracketExpected: 'a ] was expected',
    EndOfFileExpected: 'text after the end of the object',
    InvalidCommentToken: 'a malformed comment',
    UnexpectedEndOfComment: 'a comment that never ends',
    UnexpectedEndOfString: 'a string that never ends',
    UnexpectedEndOfNumber: 'a number that never ends',
    InvalidUnicode: 'a malformed \\u escape',
    InvalidEscapeCharacter: 'a malformed escape',
    InvalidCharacter: 'a control character in a string',
  };
  return words[code] ?? code;
}

export interface VariableContext {
  /** The repository (or folder) on the machine that reads the file. */
  localWorkspaceFolder: string;
  /** Where the workspace is inside the environment. */
  containerWorkspaceFolder: string;
  /** The environment of the machine that reads the file (for `${localEnv:VAR}`). */
  localEnv: Record<string, string | undefined>;
}

function basename(p: string): string {
  const parts = p.split('/').filter(Boolean);
  return parts[parts.length - 1] ?? '';
}

/**
 * Substitutes the variables the devcontainers CLI resolves when it reads a file:
 * `${localWorkspaceFolder}`, `${localWorkspaceFolderBasename}`, `${containerWorkspaceFolder}`,
 * `${containerWorkspaceFolderBasename}`, `${localEnv:VAR}` and `${env:VAR}` (with an optional
 * `:default`). `${containerEnv:VAR}` is left for the environment (it is the container's own
 * value), and so is anything unknown, as the CLI does.
 */
export function substituteVariables<T>(value: T, ctx: VariableContext): T {
  const one = (s: string): string =>
    s.replace(/\$\{([^}:]+)(?::([^}:]+)(?::([^}]*))?)?\}/g, (whole, name: string, arg?: string, dflt?: string) => {
      switch (name) {
        case 'localWorkspaceFolder':
          return arg === undefined ? ctx.localWorkspaceFolder : whole;
        case 'localWorkspaceFolderBasename':
          return arg === undefined ? basename(ctx.localWorkspaceFolder) : whole;
        case 'containerWorkspaceFolder':
          return arg === undefined ? ctx.containerWorkspaceFolder : whole;
        case 'containerWorkspaceFolderBasename':
          return arg === undefined ? basename(ctx.containerWorkspaceFolder) : whole;
        case 'localEnv':
        case 'env':
          if (arg === undefined) return whole;
          return ctx.localEnv[arg] ?? dflt ?? '';
        default:
          return whole;
      }
    });
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return one(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}
