// Answers of the `progress` routes: NDJSON, a line per progress report and then one line with
// the result or the error. The status line waits for the first report, so a request refused at
// once (a bad digest, no registry) is an ordinary error answer with its HTTP status.
import type http from 'node:http';
import { asBerthError } from '../core/errors.js';
import type { ProgressLine, ProgressReport } from '../core/toolchain-api.js';
import { replyError } from './http-io.js';

/** The least time between two progress lines on the wire; the last report of a burst is sent. */
const MIN_INTERVAL_MS = 100;

export async function answerWithProgress(
  res: http.ServerResponse,
  log: (line: string) => void,
  run: (progress: (p: ProgressReport) => void) => Promise<unknown>,
): Promise<void> {
  let started = false;
  let lastSent = 0;
  let pending: ProgressReport | undefined;
  let timer: NodeJS.Timeout | undefined;
  const start = (): void => {
    if (started) return;
    started = true;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  };
  const line = (l: ProgressLine): void => {
    if (res.writableEnded || res.destroyed) return;
    start();
    res.write(JSON.stringify(l) + '\n');
  };
  const flush = (): void => {
    timer = undefined;
    if (!pending) return;
    lastSent = Date.now();
    line({ progress: pending });
    pending = undefined;
  };
  const progress = (p: ProgressReport): void => {
    const fraction = p.fraction === undefined || !Number.isFinite(p.fraction) ? undefined : Math.min(1, Math.max(0, p.fraction));
    pending = { message: p.message, ...(fraction === undefined ? {} : { fraction }) };
    if (timer) return;
    const wait = lastSent + MIN_INTERVAL_MS - Date.now();
    if (wait <= 0) flush();
    else timer = setTimeout(flush, wait);
  };
  try {
    const result = await run(progress);
    if (timer) clearTimeout(timer);
    flush();
    if (res.writableEnded || res.destroyed) return;
    start();
    if (!res.writableEnded && !res.destroyed) res.end(JSON.stringify({ result } satisfies ProgressLine) + '\n');
  } catch (err) {
    if (timer) clearTimeout(timer);
    pending = undefined;
    if (!started) return replyError(res, err, log);
    const e = asBerthError(err);
    if (e.code === 'internal') log(`berth: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    if (!res.writableEnded && !res.destroyed) res.end(JSON.stringify({ error: e.toWire() } satisfies ProgressLine) + '\n');
  }
}
