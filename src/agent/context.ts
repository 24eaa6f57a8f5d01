// What an operation handler in the agent gets: its stream id, ways to answer, and hooks for
// the frames the daemon sends on its stream.
import { constants } from 'node:os';
import type { AgentResponse } from './protocol.js';
import type { Writable } from 'node:stream';

export interface StreamHooks {
  onStdin?: (chunk: Buffer) => void;
  onStdinEnd?: () => void;
  onControl?: (msg: ControlMessage) => void;
  /** Stdin that arrived before the handler installed onStdin. */
  early: Buffer[];
  earlyEnd: boolean;
}

export interface ControlMessage {
  signal?: string;
  /** The daemon's word for "the client went away": end everything the command started. */
  hangup?: boolean;
  resize?: [number, number];
  pause?: boolean;
  resume?: boolean;
}

export interface OpContext {
  readonly id: number;
  readonly hooks: StreamHooks;
  /** Sends a frame; false when the connection is congested (wait for `whenDrained`). */
  send(kind: number, payload?: Buffer | string): boolean;
  whenDrained(resume: () => void): void;
  respond(body: AgentResponse): void;
  fail(code: string, message: string): void;
  /** Runs when the connection closes before the operation answered. */
  onAbandon(cb: () => void): void;
  /** Feeds early stdin to the handler and routes later stdin to it. */
  takeStdin(onData: (c: Buffer) => void, onEnd: () => void): void;
  /**
   * Stdin flow control: when a write into a slow reader returns false, stop reading the
   * connection until it drains, so the agent never holds more than one buffer of stdin.
   */
  hold(w: Writable): void;
}

export function signalNumber(sig: string): number {
  return (constants.signals as Record<string, number>)[sig] ?? 0;
}

export function killGroup(pid: number | undefined, signal: string): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}
