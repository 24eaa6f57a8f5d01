// A port of an environment (here or on another node) on a local TCP port: each connection is a
// stream through the node's connect route, so nothing inside the environment listens outside it.
import { createServer, type Server } from 'node:net';
import { BerthError } from '../core/errors.js';
import { target } from './nodes.js';

export interface Forwarded {
  /** The local address, 127.0.0.1:PORT. */
  local: string;
  port: number;
  close(): Promise<void>;
}

/** Forwards `port` of `[NODE/]ENV` to 127.0.0.1:`localPort` (default the same port; 0 picks one). */
export async function forward(what: string, port: number, opts: { localPort?: number } = {}): Promise<Forwarded> {
  const t = await target(what);
  try {
    await t.client.getEnv(t.env);
  } catch (err) {
    t.client.close();
    throw err;
  }
  const localPort = opts.localPort ?? port;
  const server: Server = createServer((sock) => {
    sock.pause();
    const ws = t.client.connect(t.env, port);
    ws.on('message', (d, bin) => {
      if (bin) sock.write(d as Buffer);
      else sock.resume();
    });
    ws.on('close', () => sock.end());
    ws.on('error', () => sock.destroy());
    sock.on('data', (c: Buffer) => ws.readyState === ws.OPEN && ws.send(c));
    sock.on('close', () => ws.close());
    sock.on('error', () => ws.close());
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new BerthError('already_exists', `local port ${localPort} is in use`, 'pick another with --local PORT')
            : err,
        ),
      );
      server.listen(localPort, '127.0.0.1', () => resolve());
    });
  } catch (err) {
    t.client.close();
    throw err;
  }
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : localPort;
  return {
    local: `127.0.0.1:${bound}`,
    port: bound,
    /** Stops listening; connections still open end with the client. */
    close: async () => {
      server.close();
      t.client.close();
    },
  };
}
