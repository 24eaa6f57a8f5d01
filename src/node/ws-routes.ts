// The node API's WebSocket routes: exec, terminals (and read-only views of them), service logs
// and TCP streams to a port inside an environment. Messages are framed as core/ws-codec says.
import type { WebSocket } from 'ws';
import { ExecStreamRequest } from '../core/contract.js';
import { asBerthError, BerthError } from '../core/errors.js';
import { EXEC_TAG, FLOW, PtyControl, tagged, untag } from '../core/ws-codec.js';
import { openStream } from '../env/env-ops.js';
import { startExec } from '../env/exec-service.js';
import type { PtySessions } from '../env/pty-sessions.js';
import type { EnvManager } from '../env/manager.js';
import { parse } from './http-io.js';

export interface WsContext {
  manager: EnvManager;
  ptys: PtySessions;
  log: (line: string) => void;
}

export function closeWith(ws: WebSocket, err: unknown, log?: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log?.(`berth: ${e.message}`);
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ error: e.toWire() }));
  ws.close();
}

/** Pauses a source while the client's buffer is over the high-water mark. */
function flow(ws: WebSocket, pause: () => void, resume: () => void): () => void {
  let paused = false;
  let timer: NodeJS.Timeout | undefined;
  return () => {
    if (paused || ws.bufferedAmount < FLOW.highWater) return;
    paused = true;
    pause();
    timer = setInterval(() => {
      if (ws.readyState !== ws.OPEN || ws.bufferedAmount < FLOW.lowWater) {
        clearInterval(timer);
        paused = false;
        resume();
      }
    }, 20);
  };
}

export function execOverWebSocket(o: WsContext, name: string, ws: WebSocket): void {
  let run: Awaited<ReturnType<typeof startExec>> | undefined;
  let closed = false;
  const early: Buffer[] = [];
  const onBinary = (data: Buffer): void => {
    if (!run) return void early.push(data);
    const m = untag(data);
    if (m?.tag === EXEC_TAG.stdin && !run.writeStdin(m.payload)) {
      // Stdin flow control: read no more from the client until the agent takes this.
      ws.pause();
      run.onDrain(() => ws.resume());
    } else if (m?.tag === EXEC_TAG.stdinEnd) run.endStdin();
    else if (m?.tag === EXEC_TAG.signal) run.signal(m.payload.toString('utf8'));
  };
  ws.on('close', () => {
    closed = true;
    run?.hangUp();
  });
  ws.once('message', (first, isBinary) => {
    if (isBinary) return closeWith(ws, new BerthError('invalid_request', 'the first message must be the JSON exec request'));
    let req: ExecStreamRequest;
    try {
      req = parse(ExecStreamRequest, JSON.parse(String(first)));
    } catch (err) {
      return closeWith(ws, err instanceof SyntaxError ? new BerthError('invalid_request', 'exec request is not JSON') : err);
    }
    ws.on('message', (data, bin) => {
      if (bin) onBinary(data as Buffer);
    });
    let check = (): void => {};
    startExec(o.manager, name, req, {
      stdout: (c) => {
        ws.send(tagged(EXEC_TAG.stdout, c));
        check();
      },
      stderr: (c) => {
        ws.send(tagged(EXEC_TAG.stderr, c));
        check();
      },
    }).then(
      (r) => {
        run = r;
        check = flow(
          ws,
          () => r.pause(),
          () => r.resume(),
        );
        if (closed) return r.hangUp();
        for (const d of early.splice(0)) onBinary(d);
        r.result.then(
          (result) => {
            if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ exit: result }));
            ws.close();
          },
          (err: unknown) => closeWith(ws, err, o.log),
        );
      },
      (err: unknown) => closeWith(ws, err, o.log),
    );
  });
}

export function ptyOverWebSocket(o: WsContext, name: string, q: URLSearchParams, ws: WebSocket): void {
  const cols = Number(q.get('cols') ?? 80);
  const rows = Number(q.get('rows') ?? 24);
  const argv = q.getAll('argv');
  let stream: Awaited<ReturnType<PtySessions['open']>>['stream'] | undefined;
  let check = (): void => {};
  const pending: Array<Buffer | string> = [];
  const handleMessage = (data: Buffer | string, isBinary: boolean): void => {
    if (!stream) return void pending.push(isBinary ? data : String(data));
    o.manager.touch(name);
    if (isBinary) stream.writeStdin(data as Buffer);
    else {
      try {
        const msg = PtyControl.safeParse(JSON.parse(String(data)));
        if (!msg.success) return;
        if (msg.data.resize) stream.control({ resize: msg.data.resize });
        if (msg.data.signal) stream.signal(msg.data.signal);
      } catch {
        /* ignore */
      }
    }
  };
  ws.on('message', (d, bin) => handleMessage(d as Buffer, bin));
  ws.on('close', () => stream?.endStdin());
  o.ptys
    .open(
      name,
      { argv, cols, rows },
      {
        output: (c) => {
          if (ws.readyState !== ws.OPEN) return;
          ws.send(c);
          check();
        },
        exit: (code, signal) => exitAndClose(ws, code, signal),
      },
    )
    .then(
      (s) => {
        stream = s.stream;
        // The owner's terminal holds the session back when it cannot keep up.
        check = flow(
          ws,
          () => s.stream.control({ pause: true }),
          () => s.stream.control({ resume: true }),
        );
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ session: s.id }));
        else s.stream.endStdin();
        for (const p of pending.splice(0)) handleMessage(p, typeof p !== 'string');
      },
      (err: unknown) => closeWith(ws, err, o.log),
    );
}

/** A TCP stream to a port inside the environment, as WebSocket binary messages. */
export function connectOverWebSocket(o: WsContext, name: string, port: number, ws: WebSocket): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return closeWith(ws, new BerthError('invalid_request', 'port must be 1-65535'));
  let check = (): void => {};
  const pending: Buffer[] = [];
  let stream: Awaited<ReturnType<typeof openStream>> | undefined;
  ws.on('message', (d, bin) => {
    if (!bin) return;
    if (stream) stream.writeStdin(d as Buffer);
    else pending.push(d as Buffer);
  });
  openStream(
    o.manager,
    name,
    { op: 'connect', port },
    {
      onStdout: (c) => {
        if (ws.readyState === ws.OPEN) ws.send(c);
        check();
      },
      onOpened: () => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ open: true }));
      },
    },
  ).then(
    (s) => {
      stream = s;
      for (const c of pending.splice(0)) s.writeStdin(c);
      check = flow(
        ws,
        () => s.control({ pause: true }),
        () => s.control({ resume: true }),
      );
      ws.on('close', () => s.endStdin());
      s.done.then(
        (r) =>
          r.ok
            ? ws.close()
            : closeWith(ws, new BerthError(r.error?.code === 'not_found' ? 'not_found' : 'internal', r.error?.message ?? 'connect failed')),
        (err: unknown) => closeWith(ws, err, o.log),
      );
    },
    (err: unknown) => closeWith(ws, err, o.log),
  );
}

function exitAndClose(ws: WebSocket, code: number, signal: string | null): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ exit: { exitCode: code, signal } }));
  ws.close();
}

export function watchPty(o: WsContext, name: string, id: string, ws: WebSocket): void {
  try {
    const stop = o.ptys.watch(name, id, {
      // A watcher that cannot keep up misses output; it never slows the session down.
      output: (c) => ws.readyState === ws.OPEN && ws.bufferedAmount < FLOW.highWater && ws.send(c),
      exit: (code, signal) => exitAndClose(ws, code, signal),
    });
    ws.send(JSON.stringify({ session: id, readOnly: true }));
    ws.on('close', stop);
    // Watchers are read-only: whatever they send is dropped.
  } catch (err) {
    closeWith(ws, err);
  }
}

export function logsOverWebSocket(o: WsContext, name: string, service: string, q: URLSearchParams, ws: WebSocket): void {
  const follow = q.get('follow') === '1';
  const tail = Number(q.get('tail') ?? 64 * 1024);
  let check = (): void => {};
  openStream(
    o.manager,
    name,
    { op: 'logs', name: service, follow, tailBytes: Number.isFinite(tail) ? tail : undefined },
    {
      onStdout: (c) => {
        if (ws.readyState === ws.OPEN) ws.send(c);
        check();
      },
    },
  ).then(
    (s) => {
      check = flow(
        ws,
        () => s.control({ pause: true }),
        () => s.control({ resume: true }),
      );
      ws.on('close', () => s.endStdin());
      s.done.then(
        (r) => {
          if (!r.ok)
            return closeWith(
              ws,
              new BerthError(r.error?.code === 'not_found' ? 'not_found' : 'internal', r.error?.message ?? 'logs failed'),
            );
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ end: true }));
          ws.close();
        },
        (err: unknown) => closeWith(ws, err, o.log),
      );
    },
    (err: unknown) => closeWith(ws, err, o.log),
  );
}
