// Terminal sessions: one writer (whoever opened it) and any number of read-only watchers,
// humans or agents. Late watchers get the recent screen from a bounded scrollback.
import { randomBytes } from 'node:crypto';
import { BerthError } from '../core/errors.js';
import type { AgentStream } from '../agent/client.js';
import { openStream } from './env-ops.js';
import type { EnvManager } from './manager.js';

const SCROLLBACK = 64 * 1024;

export interface PtySink {
  output(chunk: Buffer): void;
  exit(code: number, signal: string | null): void;
}

export interface PtySession {
  id: string;
  env: string;
  argv: string[];
  startedAt: string;
  watchers: number;
}

interface Live {
  info: PtySession;
  stream: AgentStream;
  sinks: Set<PtySink>;
  scrollback: Buffer[];
  size: number;
}

export class PtySessions {
  private readonly live = new Map<string, Live>();

  constructor(private readonly manager: EnvManager) {}

  async open(
    env: string,
    opts: { argv?: string[]; cols: number; rows: number },
    owner: PtySink,
  ): Promise<{ id: string; stream: AgentStream }> {
    const id = randomBytes(4).toString('hex');
    const argv = opts.argv?.length ? opts.argv : ['/bin/bash', '-l'];
    const session: Live = {
      info: { id, env, argv, startedAt: new Date().toISOString(), watchers: 0 },
      stream: undefined as unknown as AgentStream,
      sinks: new Set([owner]),
      scrollback: [],
      size: 0,
    };
    const broadcast = (c: Buffer): void => {
      session.scrollback.push(c);
      session.size += c.length;
      while (session.size > SCROLLBACK && session.scrollback.length > 1) session.size -= session.scrollback.shift()!.length;
      for (const s of session.sinks) s.output(c);
    };
    session.stream = await openStream(
      this.manager,
      env,
      { op: 'pty', argv, cols: opts.cols, rows: opts.rows },
      { onStdout: broadcast, onStderr: broadcast },
    );
    this.live.set(id, session);
    session.stream.done.then(
      (r) => {
        this.live.delete(id);
        for (const s of session.sinks) s.exit(r.exec?.exitCode ?? 1, r.exec?.signal ?? null);
      },
      () => {
        this.live.delete(id);
        for (const s of session.sinks) s.exit(255, 'SIGHUP');
      },
    );
    return { id, stream: session.stream };
  }

  watch(env: string, id: string, sink: PtySink): () => void {
    const s = this.live.get(id);
    if (!s || s.info.env !== env)
      throw new BerthError('not_found', `no terminal session ${id} in ${env}`, `see \`berth shell ${env} --list\``);
    sink.output(Buffer.concat(s.scrollback));
    s.sinks.add(sink);
    s.info.watchers++;
    return () => {
      if (s.sinks.delete(sink)) s.info.watchers--;
    };
  }

  list(env: string): PtySession[] {
    return [...this.live.values()].filter((s) => s.info.env === env).map((s) => ({ ...s.info }));
  }
}
