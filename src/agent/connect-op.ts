// A TCP stream to a port inside the environment: port forwarding, screenshots and probes
// reach the environment's own services this way, whatever its network mode.
import { connect } from 'node:net';
import type { OpContext } from './context.js';
import { Kind, type ConnectOp } from './protocol.js';

export function runConnect(ctx: OpContext, op: ConnectOp): void {
  if (!Number.isInteger(op.port) || op.port < 1 || op.port > 65535) return ctx.fail('invalid_request', 'port must be 1-65535');
  const sock = connect({ host: '127.0.0.1', port: op.port });
  let opened = false;
  sock.setNoDelay(true);
  sock.once('connect', () => {
    opened = true;
    ctx.send(Kind.Opened, JSON.stringify({ port: op.port }));
  });
  ctx.takeStdin(
    (c) => {
      if (!sock.write(c)) ctx.hold(sock);
    },
    () => sock.end(),
  );
  ctx.onAbandon(() => sock.destroy());
  let pausedByDaemon = false;
  ctx.hooks.onControl = (msg) => {
    if (msg.pause) {
      pausedByDaemon = true;
      sock.pause();
    }
    if (msg.resume) {
      pausedByDaemon = false;
      sock.resume();
    }
  };
  sock.on('data', (c: Buffer) => {
    if (!ctx.send(Kind.Stdout, c)) {
      sock.pause();
      ctx.whenDrained(() => !pausedByDaemon && sock.resume());
    }
  });
  sock.once('error', (err: NodeJS.ErrnoException) => {
    if (!opened)
      ctx.fail(
        err.code === 'ECONNREFUSED' ? 'not_found' : 'internal',
        `nothing is listening on port ${op.port} in the environment (${err.code ?? err.message})`,
      );
  });
  sock.once('close', () => {
    if (opened) ctx.respond({ ok: true });
  });
}
