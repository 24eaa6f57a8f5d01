// Progress on stderr: a redrawn bar on a terminal, a line per step elsewhere.
export class Progress {
  private lastLine = '';
  private readonly tty = process.stderr.isTTY === true;
  private readonly started = Date.now();

  constructor(
    private readonly title: string,
    private readonly quiet = false,
  ) {}

  update(message: string, fraction?: number): void {
    if (this.quiet) return;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1).padStart(5);
    const bar = fraction === undefined ? '' : renderBar(fraction) + ' ';
    const line = `${this.title} ${bar}${message} ${secs}s`;
    if (this.tty) {
      const width = process.stderr.columns ?? 100;
      process.stderr.write('\r\x1b[2K' + line.slice(0, width - 1));
    } else {
      // A log gets a line when the step changes or another tenth is done, not for every byte count.
      const key = `${message.replace(/\d+(\.\d+)?/g, '#')}|${fraction === undefined ? '' : Math.floor(fraction * 10)}`;
      if (key !== this.lastLine) process.stderr.write(line + '\n');
      this.lastLine = key;
    }
  }

  done(message: string): void {
    if (this.quiet) return;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    process.stderr.write(`${this.tty ? '\r\x1b[2K' : ''}${this.title} ${renderBar(1)} ${message} (${secs}s)\n`);
  }
}

function renderBar(fraction: number): string {
  const width = 24;
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%`;
}

const traceStart = performance.now();

/** With BERTH_TRACE set, a line on stderr per step, with the time since the command started. */
export function trace(label: string): void {
  if (!process.env.BERTH_TRACE) return;
  process.stderr.write(`[trace ${(performance.now() - traceStart).toFixed(0).padStart(6)} ms] ${label}\n`);
}
