// The page's terminal, bridged to the node's PTY WebSockets through the one client. `watch`
// shows the newest terminal open in the environment (the agent's), read-only; `shell` opens a
// terminal of the human's own, interactive (after Take over). Closing the tab closes the
// terminal, and with it the shell.
import type { WebSocket } from 'ws';
import { asBerthError } from '../core/errors.js';
import type { Sources } from './sources.js';

type Pty = ReturnType<import('../client/client.js').NodeClient['pty']>;

function size(v: string | null, dflt: number, max: number): number {
  const n = Number(v);
  return Number.isInteger(n) && n > 0 && n <= max ? n : dflt;
}

export async function bridgeTerminal(sources: Sources, ws: WebSocket, q: URLSearchParams): Promise<void> {
  const say = (m: object): void => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
  };
  let pty: Pty | undefined;
  let closed = false;
  ws.on('close', () => {
    closed = true;
    pty?.close();
  });
  try {
    const key = q.get('env') ?? '';
    const mode = q.get('mode') === 'shell' ? 'shell' : 'watch';
    const cols = size(q.get('cols'), 100, 1000);
    const rows = size(q.get('rows'), 30, 500);
    const { source, name } = sources.resolve(key);
    const output = (c: Buffer): void => {
      if (ws.readyState === ws.OPEN) ws.send(c);
    };
    if (mode === 'watch') {
      // The newest terminal; one that ends while this starts to watch it makes way for the next.
      const skip = new Set<string>();
      for (;;) {
        const { sessions } = await source.client.call('listPty', { params: { name } });
        const newest = sessions
          .filter((x) => !skip.has(x.id))
          .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
          .pop();
        if (!newest) {
          say({ idle: true, message: `no terminal is open in ${key}: Take over to open one of your own` });
          return;
        }
        if (closed) return;
        pty = source.client.pty(name, { cols, rows, watch: newest.id }, output);
        pty.exit.catch(() => {});
        try {
          say({ session: await pty.session, mode, argv: newest.argv });
          break;
        } catch (err) {
          if (asBerthError(err).code !== 'not_found') throw err;
          skip.add(newest.id);
        }
      }
    } else {
      pty = source.client.pty(name, { cols, rows }, output);
      pty.exit.catch(() => {});
      say({ session: await pty.session, mode });
      ws.on('message', (data, bin) => {
        if (bin) return pty!.write(data as Buffer);
        try {
          const m = JSON.parse(String(data)) as { resize?: [number, number] };
          if (m.resize) pty!.resize(size(String(m.resize[0]), cols, 1000), size(String(m.resize[1]), rows, 500));
        } catch {
          /* not a control message: ignored */
        }
      });
    }
    if (closed) return pty.close();
    const exit = await pty.exit;
    say({ exit });
  } catch (err) {
    const e = asBerthError(err);
    say({ error: { code: e.code, message: e.message } });
  }
  ws.close();
}
