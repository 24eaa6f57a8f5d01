// GET /v1/events: server-sent events. What the caller missed since `since` (or the
// Last-Event-ID a reconnecting EventSource sends) comes first, then each event as it happens.
// Without either, the stream starts at the next event.
import type http from 'node:http';
import type { BerthEvent } from '../core/events.js';
import type { Principal } from '../core/tokens.js';
import type { EventBus } from '../env/event-bus.js';
import { sees } from './scope.js';

/** A subscriber whose connection cannot keep up is cut off (it reconnects from its last id). */
const MAX_BUFFERED = 4 * 1024 * 1024;
const HEARTBEAT_MS = 15_000;

function frame(e: BerthEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

export function streamEvents(
  bus: EventBus,
  principal: Principal,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  query: URLSearchParams,
): void {
  const env = query.get('env');
  const fromHeader = req.headers['last-event-id'];
  const sinceText = query.get('since') ?? (typeof fromHeader === 'string' ? fromHeader : null);
  const since = sinceText !== null && /^\d+$/.test(sinceText) ? Number(sinceText) : null;
  const wanted = (e: BerthEvent): boolean => sees(principal, e) && (env === null || e.env === env);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  const socket = res.socket;
  socket?.setNoDelay(true);
  // Subscribe before reading the backlog, so nothing falls between the two.
  const queue: BerthEvent[] = [];
  let live = false;
  let last = since ?? bus.lastId;
  const write = (e: BerthEvent): void => {
    if (e.id <= last) return;
    last = e.id;
    if (!wanted(e)) return;
    res.write(frame(e));
    if ((socket?.writableLength ?? 0) > MAX_BUFFERED) res.destroy();
  };
  const stop = bus.subscribe((e) => (live ? write(e) : queue.push(e)));
  if (since !== null) for (const e of bus.since(since)) write(e);
  for (const e of queue.splice(0)) write(e);
  live = true;
  res.write(`: connected at event ${last}\n\n`);
  const beat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  const end = (): void => {
    clearInterval(beat);
    stop();
  };
  res.on('close', end);
  req.on('close', end);
}
