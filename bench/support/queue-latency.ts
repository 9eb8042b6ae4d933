/**
 * bench:queue (b): pickup latency at a steady rate. The system's workers run
 * (own process, idle); the driver sends single jobs with the system's
 * ordinary enqueue call (autocommit: the call returns once the job is
 * committed) at `rate` jobs/s for `seconds`. Latency of a job = the time its
 * handler started − the time its enqueue call returned (the enqueuer knows it
 * is committed): one machine, one clock (performance.timeOrigin + now(), µs).
 * The commit happened a little before the call returned, so the figure is, if
 * anything, short by the response's trip back; the enqueue round trip is
 * reported beside it. The first second is a warm-up and is left out.
 */
import type { QueueWorkerLauncher, WorkerSettings } from "./queue-process.ts";
import type { QueueSystem } from "./queue-systems.ts";
import { progress } from "./report-table.ts";

export interface LatencyOptions {
  readonly rate: number;
  readonly seconds: number;
  readonly settings: WorkerSettings;
  readonly queue: string;
}

export interface LatencyResult {
  readonly achievedRate: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Enqueue call round trip p50 / p99, ms. */
  readonly sendP50Ms: number;
  readonly sendP99Ms: number;
  readonly maxInFlight: number;
  readonly duplicates: number;
}

const now = () => performance.timeOrigin + performance.now();

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function measurePickupLatency(system: QueueSystem, launcher: QueueWorkerLauncher, options: LatencyOptions): Promise<LatencyResult> {
  await system.createQueue(options.queue);
  const total = options.rate * options.seconds;
  const sentAt = new Float64Array(total);
  const committedAt = new Float64Array(total);
  const startedAt = new Float64Array(total);
  let seen = 0;
  const worker = launcher.start({
    system: system.name, databaseUrl: system.databaseUrl, queue: options.queue, expect: total, mode: "latency", settings: options.settings,
    onSeen: (seq, at) => {
      if (startedAt[seq] === 0) seen++;
      startedAt[seq] ||= at;
    },
  });
  try {
    await worker.ready;
    await new Promise((r) => setTimeout(r, 1_000)); // let the workers settle into their idle wait
    progress(`${system.label} (b): ${options.rate} jobs/s for ${options.seconds} s`);
    let inFlight = 0;
    let maxInFlight = 0;
    let failed: Error | null = null;
    const pending: Array<Promise<void>> = [];
    const started = performance.now();
    let sent = 0;
    while (sent < total && !failed) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * options.rate) + 1);
      while (sent < due) {
        const seq = sent++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        sentAt[seq] = now();
        pending.push(system.enqueueOne(options.queue, seq).then(
          () => {
            committedAt[seq] = now();
            inFlight--;
          },
          (error: unknown) => {
            failed ??= error as Error;
          },
        ));
      }
      worker.check();
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(pending);
    if (failed) throw failed;
    const sendSeconds = (performance.now() - started) / 1000;
    const deadline = Date.now() + 60_000;
    while (seen < total && Date.now() < deadline) {
      worker.check();
      await new Promise((r) => setTimeout(r, 50));
    }
    if (seen < total) throw new Error(`${system.label}: ${total - seen} of ${total} jobs not picked up 60 s after the last send`);
    const warmup = Math.min(total - 1, options.rate);
    const latencies: number[] = [];
    const sends: number[] = [];
    for (let seq = warmup; seq < total; seq++) {
      latencies.push(startedAt[seq]! - committedAt[seq]!);
      sends.push(committedAt[seq]! - sentAt[seq]!);
    }
    latencies.sort((a, b) => a - b);
    sends.sort((a, b) => a - b);
    return {
      achievedRate: total / sendSeconds,
      samples: latencies.length,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies.at(-1)!,
      sendP50Ms: percentile(sends, 0.5),
      sendP99Ms: percentile(sends, 0.99),
      maxInFlight,
      duplicates: worker.duplicates,
    };
  } finally {
    await worker.stop();
  }
}
