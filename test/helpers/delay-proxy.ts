// A delaying TCP proxy: the kernel here has no netem, so latency goes on a link by passing it
// through this. Each chunk is held for half the round-trip delay in each direction, in order,
// with one queue and one timer per direction; an end or close is passed on only after every
// chunk before it has been written.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface DelayProxy {
  port: number;
  /** Bytes carried so far: `up` from clients to the target, `down` back. */
  bytes: { up: number; down: number };
  close(): Promise<void>;
}

function delayedPipe(from: Socket, to: Socket, oneWayMs: number, count: (n: number) => void): void {
  const queue: Array<{ due: number; chunk: Buffer | null }> = [];
  let timer: NodeJS.Timeout | undefined;
  const pump = (): void => {
    timer = undefined;
    while (queue.length && queue[0]!.due <= Date.now()) {
      const { chunk } = queue.shift()!;
      if (chunk === null) {
        to.end();
        return;
      }
      if (!to.destroyed && !to.write(chunk)) from.pause();
    }
    if (queue.length) timer = setTimeout(pump, Math.max(0, queue[0]!.due - Date.now()));
  };
  const push = (chunk: Buffer | null): void => {
    queue.push({ due: Date.now() + oneWayMs, chunk });
    timer ??= setTimeout(pump, Math.max(0, queue[0]!.due - Date.now()));
  };
  to.on('drain', () => from.resume());
  from.on('data', (c: Buffer) => {
    count(c.length);
    push(c);
  });
  from.on('end', () => push(null));
  from.on('error', () => to.destroy());
}

export async function startDelayProxy(
  target: { host: string; port: number },
  rttMs: number,
  listenHost = '127.0.0.1',
): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const bytes = { up: 0, down: 0 };
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    client.setNoDelay(true);
    const upstream = connect({ port: target.port, host: target.host, allowHalfOpen: true });
    upstream.setNoDelay(true);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    delayedPipe(client, upstream, rttMs / 2, (n) => (bytes.up += n));
    delayedPipe(upstream, client, rttMs / 2, (n) => (bytes.down += n));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    bytes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
