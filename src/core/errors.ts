// Errors with stable codes. One table maps each code to its CLI exit code and HTTP status,
// so the daemon, the client and the CLI agree without guessing. No zod here: every command
// loads this file, and its schema (WireErrorSchema) is in wire-error.ts.
export const ERROR_TABLE = {
  usage: { exit: 2, http: 400 },
  invalid_name: { exit: 3, http: 400 },
  invalid_request: { exit: 15, http: 400 },
  not_found: { exit: 4, http: 404 },
  already_exists: { exit: 5, http: 409 },
  repo_not_found: { exit: 6, http: 422 },
  ref_not_found: { exit: 7, http: 422 },
  image_missing: { exit: 8, http: 422 },
  engine_unavailable: { exit: 9, http: 503 },
  daemon_unreachable: { exit: 10, http: 503 },
  interrupted: { exit: 11, http: 503 },
  not_running: { exit: 12, http: 409 },
  unauthorized: { exit: 13, http: 401 },
  forbidden: { exit: 23, http: 403 },
  too_large: { exit: 14, http: 413 },
  port_in_use: { exit: 16, http: 409 },
  not_verified: { exit: 17, http: 200 },
  service_failed: { exit: 18, http: 200 },
  corrupt: { exit: 19, http: 422 },
  no_space: { exit: 20, http: 507 },
  conflict: { exit: 21, http: 409 },
  pids_exhausted: { exit: 22, http: 429 },
  taken_over: { exit: 24, http: 423 },
  invalid_policy: { exit: 25, http: 400 },
  unknown_preset: { exit: 26, http: 400 },
  invalid_budget: { exit: 27, http: 400 },
  over_budget: { exit: 28, http: 409 },
  secret_no_host: { exit: 30, http: 400 },
  secret_unknown: { exit: 31, http: 422 },
  invalid_devcontainer: { exit: 60, http: 422 },
  build_failed: { exit: 61, http: 422 },
  registry_unreachable: { exit: 62, http: 502 },
  quota_exceeded: { exit: 41, http: 429 },
  isolation_unavailable: { exit: 42, http: 422 },
  timeout: { exit: 124, http: 504 },
  command_not_found: { exit: 127, http: 422 },
  internal: { exit: 1, http: 500 },
} as const satisfies Record<string, { exit: number; http: number }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_TABLE, value);
}

/** An error a user can act on: a stable code, a one-line message, and what to do about it. */
export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BerthError';
    this.code = code;
    this.hint = hint;
  }

  get exitCode(): number {
    return ERROR_TABLE[this.code].exit;
  }

  get httpStatus(): number {
    return ERROR_TABLE[this.code].http;
  }

  /** The one line a user sees: message, then the fix. */
  oneLine(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }

  static fromWire(wire: unknown, fallbackStatus?: number): BerthError {
    if (wire && typeof wire === 'object') {
      const w = wire as Record<string, unknown>;
      if (isErrorCode(w.code) && typeof w.message === 'string') {
        return typedError(w.code, w.message, typeof w.hint === 'string' ? w.hint : undefined);
      }
    }
    return new BerthError('internal', `unexpected error response${fallbackStatus ? ` (HTTP ${fallbackStatus})` : ''}`);
  }
}

// Typed errors, so callers can `catch (e) { if (e instanceof NotFoundError) … }`. Each keeps
// its stable code; the table below is the one place that maps codes to classes.
export class UsageError extends BerthError {}
export class InvalidRequestError extends BerthError {}
export class NotFoundError extends BerthError {}
export class ConflictError extends BerthError {}
export class UnauthorizedError extends BerthError {}
export class ForbiddenError extends BerthError {}
export class NotRunningError extends BerthError {}
export class UnavailableError extends BerthError {}
export class TimeoutError extends BerthError {}
export class TooLargeError extends BerthError {}
export class CorruptError extends BerthError {}
/** A human holds the environment with an exclusive lease: wait for the hand-back. */
export class TakenOverError extends BerthError {}

const CLASS_OF: Partial<Record<ErrorCode, typeof BerthError>> = {
  usage: UsageError,
  invalid_name: InvalidRequestError,
  invalid_request: InvalidRequestError,
  invalid_policy: InvalidRequestError,
  unknown_preset: InvalidRequestError,
  invalid_budget: InvalidRequestError,
  over_budget: ConflictError,
  quota_exceeded: ConflictError,
  not_found: NotFoundError,
  repo_not_found: NotFoundError,
  ref_not_found: NotFoundError,
  image_missing: NotFoundError,
  already_exists: ConflictError,
  conflict: ConflictError,
  port_in_use: ConflictError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_running: NotRunningError,
  engine_unavailable: UnavailableError,
  daemon_unreachable: UnavailableError,
  interrupted: UnavailableError,
  timeout: TimeoutError,
  too_large: TooLargeError,
  corrupt: CorruptError,
  secret_no_host: UsageError,
  secret_unknown: NotFoundError,
  taken_over: TakenOverError,
  invalid_devcontainer: InvalidRequestError,
  registry_unreachable: UnavailableError,
};

/** The error of its code's class (a plain BerthError for codes without one). */
export function typedError(code: ErrorCode, message: string, hint?: string): BerthError {
  const Cls = CLASS_OF[code] ?? BerthError;
  const e = new Cls(code, message, hint);
  e.name = Cls.name;
  return e;
}

export interface WireError {
  code: ErrorCode;
  message: string;
  hint?: string;
}

export function asBerthError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BerthError('internal', message, undefined, { cause: err });
}
