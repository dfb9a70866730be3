import type { PingResult } from './worker-methods';
import type { WorkerProcess } from './worker-process';

export interface HeartbeatOptions {
  intervalMs: number;
  /** Intervals in a row without a ping reply that mean the worker hangs. */
  misses: number;
  onBeat(result: PingResult, at: number): void;
  onHung(missed: number): void;
}

/**
 * Pings one worker every interval. A ping still unanswered at the next tick is a miss (no second
 * ping is stacked on it); `misses` in a row call `onHung` once. Any reply clears the count.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private outstanding = false;
  private missed = 0;

  constructor(
    private readonly worker: WorkerProcess,
    private readonly options: HeartbeatOptions,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.options.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (!this.worker.alive) return this.stop();
    if (this.outstanding) {
      this.missed += 1;
      if (this.missed >= this.options.misses) {
        this.stop();
        this.options.onHung(this.missed);
      }
      return;
    }
    this.outstanding = true;
    this.worker.call('worker.ping', {}, { internal: true }).result.then(
      (result) => {
        this.outstanding = false;
        this.missed = 0;
        if (this.timer) this.options.onBeat(result as PingResult, Date.now());
      },
      () => {
        // an error reply still proves the worker reads its input; an exit is handled elsewhere
        this.outstanding = false;
        this.missed = 0;
      },
    );
  }
}
