// What berth takes from a devcontainer.json: the fields it honours, normalised; a one-line
// warning for each field it does not; an error with file:line for anything it cannot use.
// Pure: the caller reads the file and passes the text, the paths and the environment.
import { BerthFile } from './api.js';
import {
  errorAt,
  lineOf,
  offsetOf,
  parseDevcontainerText,
  substituteVariables,
  type DevcontainerText,
  type VariableContext,
} from './devcontainer-text.js';

/** Where berth keeps an environment's workspace; `${containerWorkspaceFolder}` is this. */
export const BERTH_WORKSPACE = '/workspace';

/** One command of a lifecycle stage: a string runs through /bin/sh -c, an array as argv. */
export interface LifecycleStep {
  /** The key of the object form, or the stage's name for the string and array forms. */
  name: string;
  command: string | string[];
}

export type LifecycleStage = 'onCreateCommand' | 'updateContentCommand' | 'postCreateCommand' | 'postStartCommand';
/** The stages berth runs, in the order it runs them (the spec's order). */
export const LIFECYCLE_STAGES: readonly LifecycleStage[] = [
  'onCreateCommand',
  'updateContentCommand',
  'postCreateCommand',
  'postStartCommand',
];

export interface DevcontainerMount {
  type: 'bind' | 'volume' | 'tmpfs';
  source?: string;
  target: string;
  readonly?: boolean;
}

export interface DevcontainerFeature {
  /** As written in the file. */
  id: string;
  /** `local`: a directory next to the file; `oci`: REGISTRY/PATH[:TAG|@DIGEST]; `legacy`: a bare name of the retired feature set. */
  kind: 'local' | 'oci' | 'legacy' | 'tarball';
  options: Record<string, string | boolean>;
}

export interface DevcontainerBuild {
  /** Relative to the directory of devcontainer.json, as written. */
  dockerfile: string;
  /** Relative to the directory of devcontainer.json (default "."). */
  context: string;
  args: Record<string, string>;
  target?: string;
}

export interface Devcontainer {
  name?: string;
  image?: string;
  build?: DevcontainerBuild;
  features: DevcontainerFeature[];
  containerEnv: Record<string, string>;
  remoteEnv: Record<string, string>;
  containerUser?: string;
  remoteUser?: string;
  forwardPorts: { host?: string; port: number }[];
  lifecycle: Record<LifecycleStage, LifecycleStep[]>;
  mounts: DevcontainerMount[];
  /** `customizations.berth`, checked as berth.json is. */
  berth?: BerthFile;
  /** Only when the node's operator allows it (`allowPrivileged`). */
  privileged: boolean;
  /** One line per field berth does not honour. */
  warnings: string[];
}

export interface ReadOptions extends Omit<VariableContext, 'containerWorkspaceFolder'> {
  /** The node's operator lets environments run privileged (BERTH_ALLOW_PRIVILEGED=1). */
  allowPrivileged?: boolean;
}

/** Fields berth reads. */
const HONOURED = new Set([
  '$schema',
  'name',
  'image',
  'build',
  'dockerFile',
  'context',
  'features',
  'containerEnv',
  'remoteEnv',
  'containerUser',
  'remoteUser',
  'forwardPorts',
  'onCreateCommand',
  'updateContentCommand',
  'postCreateCommand',
  'postStartCommand',
  'mounts',
  'customizations',
  'privileged',
]);

/** Fields of the spec berth does not honour, and why (the warning's second half). */
const NOT_HONOURED: Record<string, string> = {
  runArgs: 'engine flags are not passed through; berth sets the container up itself',
  capAdd: 'capabilities are not added; environments run with the engine defaults minus what berth drops',
  securityOpt: 'security options are not changed',
  init: 'berth runs its own agent as process 1',
  overrideCommand: 'berth runs its own agent as process 1',
  hostRequirements: 'resource limits come from berth (--cpus, --memory), not from the file',
  appPort: 'use forwardPorts',
  portsAttributes: 'port labels are an editor setting',
  otherPortsAttributes: 'port labels are an editor setting',
  workspaceFolder: `berth keeps the workspace at ${BERTH_WORKSPACE}`,
  workspaceMount: `berth checks the repository out at ${BERTH_WORKSPACE} itself; it never bind-mounts the host folder`,
  shutdownAction: 'berth environments stop with `berth rm` or their TTL',
  updateRemoteUserUID: 'user ids are not rewritten',
  userEnvProbe: 'the environment is the container environment plus remoteEnv',
  initializeCommand: 'berth runs nothing on the host',
  postAttachCommand: 'berth has no attach stage',
  waitFor: 'berth waits for every lifecycle stage',
  overrideFeatureInstallOrder: 'features install in the order the file lists them',
  extensions: 'editor extensions are an editor setting',
  settings: 'editor settings are an editor setting',
  devPort: 'an editor setting',
  secrets: 'use `berth secret` for secrets',
  gpu: 'GPUs are not passed through',
  dockerComposeFile: '',
  service: '',
  runServices: '',
};

const BUILD_HONOURED = new Set(['dockerfile', 'dockerFile', 'context', 'args', 'target']);
const BUILD_NOT_HONOURED: Record<string, string> = {
  cacheFrom: 'berth caches layers on the node itself',
  options: 'engine build flags are not passed through',
};

type Raw = Record<string, unknown>;

function isRecord(v: unknown): v is Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

class Reader {
  readonly warnings: string[] = [];
  constructor(
    readonly src: DevcontainerText,
    readonly raw: Raw,
  ) {}

  fail(path: (string | number)[], message: string, hint?: string, key = false): never {
    throw errorAt(this.src, offsetOf(this.src, path, key), message, hint);
  }

  warn(path: string[], why: string): void {
    const { line } = lineOf(this.src.text, offsetOf(this.src, path, true));
    this.warnings.push(`${this.src.file}:${line}: ${path.join('.')} is not honoured by berth: ${why}`);
  }

  string(path: (string | number)[], v: unknown): string {
    if (typeof v !== 'string') this.fail(path, `${path.join('.')} must be a string`);
    return v;
  }

  stringMap(path: (string | number)[], v: unknown): Record<string, string> {
    if (v === undefined) return {};
    if (!isRecord(v)) this.fail(path, `${path.join('.')} must be an object of strings`);
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean')
        this.fail([...path, k], `${path.join('.')}.${k} must be a string`);
      out[k] = String(x);
    }
    return out;
  }

  lifecycle(stage: LifecycleStage, v: unknown): LifecycleStep[] {
    if (v === undefined) return [];
    const argv = (path: (string | number)[], x: unknown): string | string[] => {
      if (typeof x === 'string') return x;
      if (Array.isArray(x) && x.length > 0 && x.every((a) => typeof a === 'string')) return x;
      this.fail(path, `${path.join('.')} must be a command: a string, or a non-empty array of strings`);
    };
    if (isRecord(v)) return Object.entries(v).map(([name, x]) => ({ name, command: argv([stage, name], x) }));
    return [{ name: stage, command: argv([stage], v) }];
  }
}

function featureKind(id: string): DevcontainerFeature['kind'] {
  if (id.startsWith('./') || id.startsWith('../')) return 'local';
  if (/^https?:\/\//.test(id)) return 'tarball';
  if (id.includes('/')) return 'oci';
  return 'legacy';
}

function parseMount(r: Reader, i: number, v: unknown): DevcontainerMount {
  const path = ['mounts', i];
  let fields: Raw;
  if (typeof v === 'string') {
    fields = {};
    for (const part of v.split(',')) {
      const eq = part.indexOf('=');
      const k = (eq < 0 ? part : part.slice(0, eq)).trim();
      const val = eq < 0 ? true : part.slice(eq + 1).trim();
      if (k) fields[k === 'src' ? 'source' : k === 'dst' || k === 'destination' ? 'target' : k] = val;
    }
  } else if (isRecord(v)) fields = v;
  else r.fail(path, 'a mount is a string "source=…,target=…,type=…" or an object {source, target, type}');
  const type = fields.type ?? 'volume';
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs')
    r.fail(path, `mount type must be bind, volume or tmpfs, not ${String(type)}`);
  if (typeof fields.target !== 'string' || !fields.target.startsWith('/'))
    r.fail(path, 'a mount needs an absolute target', 'add target=/path/in/the/environment');
  const source = typeof fields.source === 'string' ? fields.source : undefined;
  const readonly = fields.readonly === true || fields.readonly === 'true' || fields.ro === true;
  return { type, target: fields.target, ...(source ? { source } : {}), ...(readonly ? { readonly } : {}) };
}

function parsePort(r: Reader, i: number, v: unknown): { host?: string; port: number } {
  const bad: () => never = () => r.fail(['forwardPorts', i], 'a forwarded port is a number 1-65535 or "HOST:PORT"');
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 1 || v > 65535) bad();
    return { port: v };
  }
  if (typeof v === 'string') {
    const m = /^(?:([^:]+):)?(\d{1,5})$/.exec(v);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) bad();
    return { ...(m[1] ? { host: m[1] } : {}), port };
  }
  return bad();
}

/**
 * Reads a devcontainer.json's text as berth uses it. `file` is the path shown in messages;
 * variables are substituted first, as the devcontainers CLI does.
 */
export function readDevcontainer(file: string, text: string, opts: ReadOptions): Devcontainer {
  const parsed = parseDevcontainerText(file, text);
  const raw = substituteVariables(parsed.value, { ...opts, containerWorkspaceFolder: BERTH_WORKSPACE });
  const r: Reader = new Reader(parsed.src, raw);

  for (const key of Object.keys(raw)) {
    if (HONOURED.has(key)) continue;
    const why = NOT_HONOURED[key];
    if (why === undefined)
      r.fail([key], `unknown property "${key}"`, 'check its spelling against https://containers.dev/implementors/json_reference/', true);
    if (key === 'dockerComposeFile' || key === 'service' || key === 'runServices')
      r.fail(
        [key],
        `${key}: Docker Compose devcontainers are not supported by berth`,
        'use "image" or "build" for the main container and declare the other processes as services in customizations.berth',
        true,
      );
    r.warn([key], why);
  }

  if (raw.privileged === true && !opts.allowPrivileged)
    r.fail(
      ['privileged'],
      'privileged: true is refused: this node does not allow privileged environments',
      "remove it, or ask the node's operator to start the daemon with BERTH_ALLOW_PRIVILEGED=1",
      true,
    );
  if (raw.privileged !== undefined && typeof raw.privileged !== 'boolean') r.fail(['privileged'], 'privileged must be true or false');

  const out: Devcontainer = {
    features: [],
    containerEnv: r.stringMap(['containerEnv'], raw.containerEnv),
    remoteEnv: r.stringMap(['remoteEnv'], raw.remoteEnv),
    forwardPorts: [],
    lifecycle: {
      onCreateCommand: r.lifecycle('onCreateCommand', raw.onCreateCommand),
      updateContentCommand: r.lifecycle('updateContentCommand', raw.updateContentCommand),
      postCreateCommand: r.lifecycle('postCreateCommand', raw.postCreateCommand),
      postStartCommand: r.lifecycle('postStartCommand', raw.postStartCommand),
    },
    mounts: [],
    privileged: raw.privileged === true,
    warnings: r.warnings,
  };
  if (raw.name !== undefined) out.name = r.string(['name'], raw.name);
  if (raw.containerUser !== undefined) out.containerUser = r.string(['containerUser'], raw.containerUser);
  if (raw.remoteUser !== undefined) out.remoteUser = r.string(['remoteUser'], raw.remoteUser);
  if (raw.image !== undefined) out.image = r.string(['image'], raw.image);

  // The build: `build.*`, or the older top-level `dockerFile` and `context`.
  const legacy = raw.dockerFile !== undefined ? { dockerfile: raw.dockerFile, context: raw.context } : undefined;
  if (raw.build !== undefined || legacy) {
    const b: Raw = raw.build === undefined ? {} : isRecord(raw.build) ? raw.build : r.fail(['build'], 'build must be an object');
    for (const key of Object.keys(b)) {
      if (BUILD_HONOURED.has(key)) continue;
      const why = BUILD_NOT_HONOURED[key];
      if (why === undefined)
        r.fail(['build', key], `unknown property "build.${key}"`, 'build takes dockerfile, context, args and target', true);
      r.warn(['build', key], why);
    }
    const dockerfile = b.dockerfile ?? b.dockerFile ?? legacy?.dockerfile;
    if (dockerfile !== undefined) {
      const path = raw.build === undefined ? ['dockerFile'] : ['build', 'dockerfile'];
      out.build = {
        dockerfile: r.string(path, dockerfile),
        context:
          b.context === undefined && legacy?.context === undefined ? '.' : r.string(['build', 'context'], b.context ?? legacy?.context),
        args: r.stringMap(['build', 'args'], b.args),
        ...(b.target !== undefined ? { target: r.string(['build', 'target'], b.target) } : {}),
      };
    }
  } else if (raw.context !== undefined) r.fail(['context'], 'context is only used with a Dockerfile', 'add build.dockerfile', true);
  if (out.image && out.build) r.fail(['image'], 'a devcontainer.json names either an image or a build, not both', undefined, true);
  if (!out.image && !out.build)
    r.fail([], 'a devcontainer.json needs "image" or "build.dockerfile"', 'add "image": "IMAGE" or "build": {"dockerfile": "Dockerfile"}');

  if (raw.features !== undefined) {
    if (!isRecord(raw.features)) r.fail(['features'], 'features must be an object of feature ids and their options');
    for (const [id, v] of Object.entries(raw.features)) {
      let options: Record<string, string | boolean> = {};
      if (typeof v === 'string') options = { version: v };
      else if (typeof v === 'boolean') options = {};
      else if (isRecord(v)) {
        for (const [k, x] of Object.entries(v)) {
          if (typeof x !== 'string' && typeof x !== 'boolean' && typeof x !== 'number')
            r.fail(['features', id, k], `feature option ${id} ${k} must be a string or a boolean`);
          options[k] = typeof x === 'number' ? String(x) : x;
        }
      } else r.fail(['features', id], `feature ${id} takes an object of options`);
      if (v === false) continue;
      out.features.push({ id, kind: featureKind(id), options });
    }
  }
  if (raw.forwardPorts !== undefined) {
    if (!Array.isArray(raw.forwardPorts)) r.fail(['forwardPorts'], 'forwardPorts must be an array');
    out.forwardPorts = raw.forwardPorts.map((p, i) => parsePort(r, i, p));
  }
  if (raw.mounts !== undefined) {
    if (!Array.isArray(raw.mounts)) r.fail(['mounts'], 'mounts must be an array');
    out.mounts = raw.mounts.map((m, i) => parseMount(r, i, m));
  }
  if (raw.customizations !== undefined) {
    if (!isRecord(raw.customizations)) r.fail(['customizations'], 'customizations must be an object');
    // Other tools' sections (vscode, codespaces, jetbrains, …) are theirs, by the spec.
    const berth = raw.customizations.berth;
    if (berth !== undefined) {
      const checked = BerthFile.strict().safeParse(berth);
      if (!checked.success) {
        const issue = checked.error.issues[0]!;
        r.fail(['customizations', 'berth', ...issue.path], `customizations.berth.${issue.path.join('.')}: ${issue.message}`);
      }
      out.berth = checked.data;
    }
  }
  return out;
}
