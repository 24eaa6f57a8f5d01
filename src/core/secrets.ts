// Secrets: values the node swaps in on the wire, for one host, while the environment holds
// only a placeholder. This file is the pure part: the wire schemas, names, the host a secret
// is for, the header template, and the substitution itself.
import { z } from 'zod';
import { BerthError } from './errors.js';

/** The largest secret value: a header's worth. */
export const MAX_SECRET_BYTES = 16 * 1024;

export const SecretSetRequest = z
  .object({
    /** The value, as UTF-8 text (a header value: no CR, LF or NUL). */
    value: z.string(),
    /** `HOST` or `HOST:PORT`: the only destination that ever gets the value. */
    host: z.string().max(260).optional(),
    /** `Name: template` with `{}` where the value goes, e.g. `Authorization: Bearer {}`. */
    header: z.string().max(1024).optional(),
    /** The variable the environment gets (default: the name upper-cased, `-` → `_`). */
    envVar: z.string().max(128).optional(),
  })
  .strict();
export type SecretSetRequest = z.infer<typeof SecretSetRequest>;

export const SecretInfo = z.object({
  name: z.string(),
  host: z.string(),
  /** null: 443 (HTTPS) only; plain HTTP needs its port named. */
  port: z.number().nullable(),
  header: z.string().nullable(),
  envVar: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** Environments that hold a placeholder for it now. */
  envs: z.array(z.string()),
});
export type SecretInfo = z.infer<typeof SecretInfo>;

/** What an environment shows of its secrets: names and variables, never values. */
export const EnvSecret = z.object({ name: z.string(), envVar: z.string(), host: z.string() });
export type EnvSecret = z.infer<typeof EnvSecret>;

const NAME = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;

export function validateSecretName(name: string): string {
  if (!NAME.test(name)) {
    throw new BerthError(
      'invalid_name',
      `invalid secret name ${JSON.stringify(name)}`,
      'use 1 to 63 lower-case letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
    );
  }
  return name;
}

/** gh-token → GH_TOKEN. */
export function envVarFor(name: string): string {
  const v = name.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return /^[0-9]/.test(v) ? `_${v}` : v;
}

export function validateEnvVar(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) {
    throw new BerthError(
      'usage',
      `invalid variable name ${JSON.stringify(name)}`,
      'use letters, digits and "_", not starting with a digit',
    );
  }
  if (name.startsWith('BERTH_')) throw new BerthError('usage', `${name} is berth's own variable`, 'pick another --env-var');
  return name;
}

const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** `api.github.com`, `api.github.com:8443`, `10.0.0.5:443`, `[::1]:443`. */
export function parseSecretHost(text: string | undefined): { host: string; port: number | null } {
  if (!text || !text.trim()) {
    throw new BerthError(
      'secret_no_host',
      'a secret needs the host it is for',
      'give --host HOST[:PORT], the only destination that gets the value',
    );
  }
  const t = text.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(t);
  const host = m?.[1]?.replace(/^\[|\]$/g, '');
  const port = m?.[2] === undefined ? null : Number(m[2]);
  const ipv6 = !!m?.[1]?.startsWith('[');
  const okHost = host !== undefined && (ipv6 ? /^[0-9a-f:.]+$/.test(host) : HOSTNAME.test(host) || IPV4.test(host));
  if (!okHost || (port !== null && (port < 1 || port > 65535)) || host.includes('*')) {
    throw new BerthError(
      'usage',
      `invalid secret host ${JSON.stringify(text)}`,
      'give one host name or IP address, with :PORT if not 443 and 80',
    );
  }
  return { host, port };
}

/** `Authorization: Bearer {}` → its name and template; the template has exactly one `{}`. */
export function parseHeaderTemplate(text: string): { name: string; template: string } {
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*)$/.exec(text);
  const template = m?.[2]?.trim() ?? '';
  if (!m || template.split('{}').length !== 2 || /[\r\n\0]/.test(template)) {
    throw new BerthError(
      'usage',
      `invalid --header ${JSON.stringify(text)}`,
      "use 'Name: template' with one {} for the value, e.g. 'Authorization: Bearer {}'",
    );
  }
  return { name: m[1]!, template };
}

export function validateSecretValue(value: string): string {
  if (value.length === 0) throw new BerthError('usage', 'the secret value is empty', 'give a file or stdin with the value');
  if (Buffer.byteLength(value) > MAX_SECRET_BYTES) throw new BerthError('too_large', `a secret value is at most ${MAX_SECRET_BYTES} bytes`);
  if (/[\r\n\0]/.test(value)) {
    throw new BerthError(
      'usage',
      'the secret value has a line break or NUL in it',
      'a value goes into one header line; remove them (a trailing newline is trimmed)',
    );
  }
  return value;
}

/** Does a secret for `host[:port]` apply to a connection to `host`:`port`? */
export function secretApplies(secret: { host: string; port: number | null }, host: string, port: number): boolean {
  if (secret.host !== host.toLowerCase().replace(/\.$/, '')) return false;
  // No port named: HTTPS only. Plain HTTP would put the value on the wire in clear, so it
  // needs the operator to name the port (`--host api.example:80`).
  return secret.port === null ? port === 443 : secret.port === port;
}

/** One secret as the substitution sees it. */
export interface Binding {
  placeholder: string;
  value: string;
  /** Only this header (lower case) gets it, rewritten to the template; null: any header, in place. */
  header: { name: string; template: string } | null;
}

/**
 * Swaps placeholders for values in a request's raw headers (name, value, name, value…), in
 * place; the request line and body are never touched. `Basic` credentials are decoded and
 * re-encoded, so a placeholder used as a password (git over HTTPS) works. Returns how many
 * headers changed.
 */
export function substituteHeaders(raw: string[], bindings: Binding[]): number {
  let changed = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    let next = value;
    for (const b of bindings) {
      if (b.header && b.header.name.toLowerCase() !== name) continue;
      if (next.includes(b.placeholder)) {
        next = b.header ? b.header.template.split('{}').join(b.value) : next.split(b.placeholder).join(b.value);
        continue;
      }
      const basic = /^(basic[ \t]+)([A-Za-z0-9+/=]+)$/i.exec(next);
      if (!basic) continue;
      const decoded = Buffer.from(basic[2]!, 'base64').toString('utf8');
      if (!decoded.includes(b.placeholder)) continue;
      const swapped = Buffer.from(decoded.split(b.placeholder).join(b.value), 'utf8').toString('base64');
      next = `${basic[1]!}${swapped}`;
    }
    if (next !== value) {
      raw[i + 1] = next;
      changed++;
    }
  }
  return changed;
}
