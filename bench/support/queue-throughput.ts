/**
 * bench:queue (a): enqueue N jobs with each system's batch insert from a few
 * connections, then start the system's workers (own process) and time until
 * every job is completed, as the database says (no job of the queue left
 * in created/active state), polled every 50 ms.
 */
import { cpuBetween, cpuSnapshot, type CpuUse } from "./cpu-accounting.ts";
import type { QueueWorkerLauncher, WorkerSettings } from "./queue-process.ts";
import type { QueueSystem } from "./queue-systems.ts";
import { fmt, progress } from "./report-table.ts";

export interface ThroughputOptions {
  readonly jobs: number;
  readonly enqueueBatch: number;
  readonly enqueueConnections: number;
  readonly settings: WorkerSettings;
  readonly queue: string;
}

export interface ThroughputResult {
  readonly enqueueSeconds: number;
  /** While enqueueing: the server's and the driver's (the enqueuers') CPU. */
  readonly enqueueCpu: CpuUse;
  /** From the workers' start call (connections and startup included) until none is left. */
  readonly completeSeconds: number;
  readonly duplicates: number;
  readonly workerCpuSeconds: number;
  readonly workerPeakRss: number;
  readonly cpu: CpuUse;
}

/** Sends seq 0…total-1 in batches of `batch` from `connections` concurrent loops. */
export async function enqueueAll(system: QueueSystem, queue: string, total: number, batch: number, connections: number, onProgress?: (sent: number) => void): Promise<void> {
  let next = 0;
  let sent = 0;
  const loop = async () => {
    while (next < total) {
      const from = next;
      next = Math.min(total, next + batch);
      const seqs = Array.from({ length: next - from }, (_, i) => from + i);
      await system.enqueueBatch(queue, seqs);
      sent += seqs.length;
      onProgress?.(sent);
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
}

export async function measureThroughput(system: QueueSystem, launcher: QueueWorkerLauncher, pmPid: number, options: ThroughputOptions): Promise<ThroughputResult> {
  await system.createQueue(options.queue);
  progress(`${system.label} (a): enqueueing ${fmt.int(options.jobs)} jobs`);
  let lastReport = 0;
  const enqueueStarted = performance.now();
  const enqueueBefore = cpuSnapshot(pmPid);
  await enqueueAll(system, options.queue, options.jobs, options.enqueueBatch, options.enqueueConnections, (sent) => {
    if (performance.now() - lastReport > 5_000) {
      lastReport = performance.now();
      progress(`  enqueued ${fmt.int(sent)}`);
    }
  });
  const enqueueSeconds = (performance.now() - enqueueStarted) / 1000;
  const enqueueCpu = cpuBetween(enqueueBefore, cpuSnapshot(pmPid));
  if ((await system.remaining(options.queue)) !== options.jobs) throw new Error(`${system.label}: ${await system.remaining(options.queue)} jobs pending after enqueueing ${options.jobs}`);

  progress(`${system.label} (a): completing them with ${options.settings.concurrency} workers`);
  const before = cpuSnapshot(pmPid);
  const worker = launcher.start({ system: system.name, databaseUrl: system.databaseUrl, queue: options.queue, expect: options.jobs, mode: "count", settings: options.settings });
  try {
    const { startedAt } = await worker.ready;
    let remaining = options.jobs;
    lastReport = performance.now();
    while (remaining > 0) {
      await new Promise((r) => setTimeout(r, 50));
      worker.check();
      remaining = await system.remaining(options.queue);
      if (performance.now() - lastReport > 5_000) {
        lastReport = performance.now();
        progress(`  handled ${fmt.int(worker.handled)}, ${fmt.int(remaining)} not completed`);
      }
    }
    const doneAt = performance.timeOrigin + performance.now();
    const after = cpuSnapshot(pmPid);
    // The last progress line may be up to 100 ms old.
    await new Promise((r) => setTimeout(r, 150));
    if (worker.handled !== options.jobs) throw new Error(`${system.label}: the handler saw ${worker.handled} distinct jobs, expected ${options.jobs}`);
    return {
      enqueueSeconds,
      enqueueCpu,
      completeSeconds: (doneAt - startedAt) / 1000,
      duplicates: worker.duplicates,
      workerCpuSeconds: worker.cpuSeconds,
      workerPeakRss: worker.peakRss,
      cpu: cpuBetween(before, after),
    };
  } finally {
    await worker.stop();
  }
}
