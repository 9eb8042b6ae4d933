/**
 * bench:queue (c): churn. M messages flow through one queue: producers send
 * batches (the system's batch insert) while the workers (own process,
 * `concurrency` handlers) complete them, the backlog held near `backlog`
 * jobs (a producer waits while sent − handled is above it). Every `windowMs`
 * the workers report their claim queries' wall times (p50 / p99 / max) and
 * the driver measures the job table: pg_total_relation_size, indexes, live
 * and dead tuples, autovacuum runs. Start = the first full window, end = the
 * last full window before the producers stop: does claim p99 or the table
 * grow with the number of messages that went through?
 */
import type { ClaimWindow, QueueWorkerLauncher, WorkerSettings } from "./queue-process.ts";
import type { QueueSystem, TableSize } from "./queue-systems.ts";
import { fmt, progress } from "./report-table.ts";

export interface ChurnOptions {
  readonly messages: number;
  readonly backlog: number;
  readonly enqueueBatch: number;
  readonly enqueueConnections: number;
  readonly windowMs: number;
  readonly settings: WorkerSettings;
  readonly queue: string;
}

export interface ChurnWindow extends ClaimWindow {
  /** Messages handled when the window closed. */
  readonly handled: number;
  readonly size: TableSize;
  /** Messages handled per second in this window. */
  readonly rate: number;
}

export interface ChurnResult {
  readonly messages: number;
  readonly seconds: number;
  readonly windows: readonly ChurnWindow[];
  readonly first: ChurnWindow;
  readonly last: ChurnWindow;
  /** After the producers stopped and the queue drained. */
  readonly drained: TableSize;
  readonly duplicates: number;
}

export async function measureChurn(system: QueueSystem, launcher: QueueWorkerLauncher, options: ChurnOptions): Promise<ChurnResult> {
  await system.createQueue(options.queue);
  const windows: ChurnWindow[] = [];
  let producing = true;
  let lastHandled = 0;
  let lastAt = Date.now();
  let sizing: Promise<void> = Promise.resolve();
  const worker = launcher.start({
    system: system.name, databaseUrl: system.databaseUrl, queue: options.queue, expect: options.messages, mode: "count", settings: options.settings,
    claimWindowMs: options.windowMs,
    onClaims: (window) => {
      const handled = worker.handled;
      const rate = ((handled - lastHandled) * 1000) / Math.max(1, window.at - lastAt);
      lastHandled = handled;
      lastAt = window.at;
      const stillProducing = producing;
      sizing = sizing.then(async () => {
        const size = await system.tableSize(options.queue);
        if (stillProducing) windows.push({ ...window, handled, size, rate });
        progress(`  ${system.label} churn: ${fmt.int(handled)} handled (${fmt.int(rate)}/s), claim p99 ${window.p99Ms.toFixed(1)} ms, ` +
          `table ${fmt.mb(size.totalBytes)} (indexes ${fmt.mb(size.indexBytes)}), ${fmt.int(size.deadTuples)} dead, ${size.autovacuums} autovacuums`);
      });
    },
  });
  try {
    await worker.ready;
    const started = performance.now();
    let next = 0;
    const produce = async () => {
      while (next < options.messages) {
        while (next - worker.handled > options.backlog) {
          worker.check();
          await new Promise((r) => setTimeout(r, 5));
        }
        const from = next;
        next = Math.min(options.messages, next + options.enqueueBatch);
        await system.enqueueBatch(options.queue, Array.from({ length: next - from }, (_, i) => from + i));
      }
    };
    await Promise.all(Array.from({ length: options.enqueueConnections }, produce));
    producing = false;
    while (worker.handled < options.messages) {
      worker.check();
      await new Promise((r) => setTimeout(r, 50));
    }
    while ((await system.remaining(options.queue)) > 0) await new Promise((r) => setTimeout(r, 50));
    const seconds = (performance.now() - started) / 1000;
    await sizing;
    const drained = await system.tableSize(options.queue);
    // The first window holds the workers' start; the start figure is the second (when there are three or more).
    const full = windows.length >= 3 ? windows.slice(1) : windows;
    if (full.length === 0) throw new Error(`${system.label}: the churn run ended within its first window of ${options.windowMs} ms; send more messages or shorten --churn-window-ms`);
    return { messages: options.messages, seconds, windows: full, first: full[0]!, last: full.at(-1)!, drained, duplicates: worker.duplicates };
  } finally {
    await worker.stop();
  }
}
