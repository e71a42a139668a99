/**
 * Progress bar with throughput and ETA for long steps (decoding, epochs,
 * evaluation). On a terminal it redraws one line; otherwise (CI logs, files)
 * it prints a line at most every `logIntervalSeconds`.
 */

export interface ProgressOptions {
  /** Unit shown with the throughput, e.g. "img". */
  unit?: string;
  /** Seconds between plain-text lines when stderr is not a terminal. */
  logIntervalSeconds?: number;
  /** Suppresses all output (tests, library use). */
  silent?: boolean;
  stream?: NodeJS.WriteStream;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '--:--';
  }
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export class ProgressBar {
  private done = 0;
  private readonly start = performance.now();
  private lastDraw = 0;
  private suffix = '';
  private readonly stream: NodeJS.WriteStream;
  private readonly interactive: boolean;
  private readonly unit: string;
  private readonly logIntervalMs: number;
  private readonly silent: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    options: ProgressOptions = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    this.interactive = Boolean(this.stream.isTTY) && process.env.CI === undefined;
    this.unit = options.unit ?? 'it';
    this.logIntervalMs = (options.logIntervalSeconds ?? 30) * 1000;
    this.silent = options.silent ?? process.env.FER_PROGRESS === '0';
  }

  /** Advances by `count` items; `suffix` replaces the trailing text (e.g. a running loss). */
  tick(count = 1, suffix?: string): void {
    this.done += count;
    if (suffix !== undefined) {
      this.suffix = suffix;
    }
    const now = performance.now();
    const interval = this.interactive ? 200 : this.logIntervalMs;
    if (now - this.lastDraw >= interval || this.done >= this.total) {
      this.lastDraw = now;
      this.draw(false);
    }
  }

  /** Seconds since the bar was created. */
  elapsedSeconds(): number {
    return (performance.now() - this.start) / 1000;
  }

  rate(): number {
    const elapsed = this.elapsedSeconds();
    return elapsed > 0 ? this.done / elapsed : 0;
  }

  finish(suffix?: string): void {
    if (suffix !== undefined) {
      this.suffix = suffix;
    }
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (this.silent) {
      return;
    }
    const elapsed = this.elapsedSeconds();
    const rate = this.rate();
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const eta = rate > 0 ? (this.total - this.done) / rate : Number.NaN;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const timing = final
      ? `${formatDuration(elapsed)}`
      : `${formatDuration(elapsed)}<${formatDuration(eta)}`;
    const line =
      `${this.label} [${bar}] ${this.done}/${this.total} ${(fraction * 100).toFixed(0)}% ` +
      `${rate.toFixed(1)} ${this.unit}/s ${timing}${this.suffix ? ' ' + this.suffix : ''}`;
    if (this.interactive) {
      this.stream.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
    } else {
      this.stream.write(`${line}\n`);
    }
  }
}
