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
// Many nodes: this machine's list of nodes, `NODE/ENV` names, placement, enter and push, ports.
export {
  addNode,
  listEverywhere,
  loadNodes,
  nodeStatuses,
  removeNode,
  target,
  type NodeAddOptions,
  type NodeEntry,
  type NodeStatus,
  type Target,
} from './nodes.js';
export { place, policy } from './placement.js';
export { enter, push, type Entered, type EnterOptions, type Pushed } from './enter.js';
export { forward, type Forwarded } from './forward.js';
// Toolchains, built and moved by the node; the local node run in the foreground.
export {
  buildToolchain,
  pullToolchain,
  pushToolchain,
  registryFromEnv,
  toolchainStatus,
  type BuiltToolchain,
  type ProgressOptions,
  type ProgressReport,
  type PulledToolchain,
  type PushedToolchain,
  type ToolchainStatus,
} from './toolchain.js';
export { runNode, type NodeOptions, type RunningNode } from './connect.js';
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
