// A delaying TCP proxy: the kernel here has no netem, so latency goes on a link by passing it
// through this. Each chunk is held for half the round-trip delay in each direction, order kept.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

export async function startDelayProxy(
  target: { host: string; port: number },
  rttMs: number,
  listenHost = '127.0.0.1',
): Promise<DelayProxy> {
  const oneWay = rttMs / 2;
  const sockets = new Set<Socket>();
  const pipe = (from: Socket, to: Socket): void => {
    let last = 0;
    from.on('data', (c: Buffer) => {
      // Never before the previous chunk: a later chunk cannot overtake an earlier one.
      const due = Math.max(Date.now() + oneWay, last);
      last = due;
      setTimeout(() => {
        if (!to.destroyed) to.write(c);
      }, due - Date.now());
    });
    from.on('end', () => setTimeout(() => to.end(), Math.max(0, last - Date.now()) + 1));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), Math.max(0, last - Date.now()) + 5));
  };
  const server: Server = createServer((client) => {
    client.setNoDelay(true);
    const upstream = connect(target.port, target.host);
    upstream.setNoDelay(true);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
