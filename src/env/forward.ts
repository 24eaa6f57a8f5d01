// Port forwarding: a TCP listener whose connections are carried over the agent connection
// to a port inside the environment. Works whatever the environment's network mode, and needs
// no route from the node into the environment.
import { createServer, type Server, type Socket } from 'node:net';
import type { EnvManager } from './manager.js';
import { openStream } from './env-ops.js';
import type { AgentStream } from '../agent/client.js';

export interface Forward {
  host: string;
  port: number;
  target: number;
  close(): Promise<void>;
}

/**
 * Carries every connection `server` accepts to `target` inside the environment, through the
 * agent's `connect`. The server may listen anywhere: on the node, or in another network
 * namespace (the screenshot browser's).
 */
export function relayToEnv(manager: EnvManager, name: string, target: number, server: Server): { close(): Promise<void> } {
  const sockets = new Set<Socket>();
  server.on('connection', (sock: Socket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.pause();
    let stream: AgentStream | undefined;
    openStream(
      manager,
      name,
      { op: 'connect', port: target },
      {
        onStdout: (c) => {
          if (!sock.write(c) && stream) {
            stream.control({ pause: true });
            sock.once('drain', () => stream?.control({ resume: true }));
          }
        },
        onOpened: () => sock.resume(),
      },
    ).then(
      (s) => {
        stream = s;
        sock.on('data', (c: Buffer) => s.writeStdin(c));
        sock.on('end', () => s.endStdin());
        sock.on('error', () => s.endStdin());
        s.done.then(
          (r) => (r.ok ? sock.end() : sock.destroy()),
          () => sock.destroy(),
        );
      },
      () => sock.destroy(),
    );
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export async function startForward(
  manager: EnvManager,
  name: string,
  target: number,
  bind = { host: '127.0.0.1', port: 0 },
): Promise<Forward> {
  await manager.agentFor(name); // fail early for an unknown or stopped environment
  const server: Server = createServer();
  const relay = relayToEnv(manager, name, target, server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(bind.port, bind.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : bind.port;
  return { host: bind.host, port, target, close: () => relay.close() };
}
