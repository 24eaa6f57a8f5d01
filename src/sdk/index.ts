// The package's own export: `import { Berth } from 'berth'`.
export { Berth, type ConnectOptions, type CreateOptions } from './berth.js';
export {
  Environment,
  type BatchOutcome,
  type BatchStep,
  type CommandHandle,
  type ExecOptions,
  type ExecOutcome,
  type ServiceOptions,
} from './environment.js';
export { NodeClient, type ClientOptions } from '../client/client.js';
export {
  BerthError,
  ConflictError,
  CorruptError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  NotRunningError,
  TakenOverError,
  TimeoutError,
  TooLargeError,
  UnauthorizedError,
  UnavailableError,
  UsageError,
  ERROR_TABLE,
  type ErrorCode,
} from '../core/errors.js';
export type { BerthEvent, EventType } from '../core/events.js';
export type {
  DescribeResult,
  EgressReport,
  EgressSummary,
  EnvInfo,
  EnvStats,
  ExecResult,
  IdentityInfo,
  NodeInfo,
  PoolInfo,
  ServiceInfo,
  SnapshotInfo,
  VerifyResult,
} from '../core/api.js';
export type { TokenCreated, TokenInfo } from '../core/tokens.js';
export type { EnvSecret, SecretInfo, SecretSetRequest } from '../core/secrets.js';
export { AGENT_STATES, byAttention, type AgentState, type AgentStatus, type Handback, type Lease } from '../core/supervision.js';
