/**
 * A queue worker's metrics (docs/ARCHITECTURE.md "Metrics"), on a
 * prom-client registry the caller passes as `WorkOptions.metrics`: jobs by
 * outcome and handler durations counted as they settle, the jobs in flight
 * from the worker itself, and the queue's messages by state and its live
 * workers read when scraped (describeQueues: what `tributary queues` shows).
 */
import type { Sql } from "postgres";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { oncePerScrape } from "@tributary/core";
import { describeQueues, type QueueDescription } from "./queue-admin.ts";

/** What became of a handled job: acked; failed and to be delivered again; failed for the last time (a dead letter). */
export type JobOutcome = "completed" | "retried" | "dead";

interface Worker {
  readonly queue: string;
  readonly sql: Sql;
  readonly inFlight: () => number;
}

const workersOf = new WeakMap<Registry, Set<Worker>>();

export class QueueWorkerMetrics {
  private readonly jobs: Counter<"queue" | "outcome">;
  private readonly seconds: Histogram<"queue">;
  private readonly worker: Worker;
  private readonly workers: Set<Worker>;

  constructor(registry: Registry, queue: string, sql: Sql, inFlight: () => number) {
    const registers = [registry];
    const metric = <M>(name: string, make: () => M): M => (registry.getSingleMetric(name) as M | undefined) ?? make();
    this.jobs = metric("tributary_queue_jobs_total", () => new Counter({
      name: "tributary_queue_jobs_total",
      help: "Jobs this process's workers handled, by outcome: completed (acked), retried (failed, to be delivered again after the backoff), dead (failed on its last delivery: a dead letter).",
      labelNames: ["queue", "outcome"], registers,
    }));
    this.seconds = metric("tributary_queue_job_duration_seconds", () => new Histogram({
      name: "tributary_queue_job_duration_seconds", help: "Time the handler took on a job, from its start to its return or throw.",
      labelNames: ["queue"], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers,
    }));
    this.worker = { queue, sql, inFlight };
    this.workers = workersOf.get(registry) ?? new Set<Worker>();
    workersOf.set(registry, this.workers);
    this.workers.add(this.worker);
    for (const outcome of ["completed", "retried", "dead"] as const) this.jobs.inc({ queue, outcome }, 0);
    if (registry.getSingleMetric("tributary_queue_worker_jobs_in_flight")) return;
    const workers = this.workers;
    new Gauge({
      name: "tributary_queue_worker_jobs_in_flight", help: "Jobs this process's workers are running now.", labelNames: ["queue"], registers,
      collect() {
        this.reset();
        for (const w of workers) this.inc({ queue: w.queue }, w.inFlight());
      },
    });
    // One read of the queues serves the gauges of a scrape.
    const read = oncePerScrape(() => queueFigures([...workers]));
    const gauge = (name: string, help: string, value: (q: QueueFigures) => number | null) => new Gauge({
      name, help, labelNames: ["queue"], registers,
      async collect() {
        this.reset();
        for (const q of await read()) {
          const v = value(q);
          if (v !== null) this.set({ queue: q.queue }, v);
        }
      },
    });
    gauge("tributary_queue_ready_messages", "Messages a claim may take now (the queue's depth).", (q) => q.ready);
    gauge("tributary_queue_in_flight_messages", "Messages claimed by any worker and not yet acked, failed or timed out.", (q) => q.inFlight);
    gauge("tributary_queue_delayed_messages", "Messages waiting for a delay, a run_at or a retry's backoff.", (q) => q.delayed);
    gauge("tributary_queue_dead_messages", "Dead letters: messages past their max deliveries.", (q) => q.dead);
    gauge("tributary_queue_oldest_ready_age_seconds", "Seconds since the oldest ready message was sent; absent when none is ready.", (q) => q.oldestReadyAgeSeconds);
    gauge("tributary_queue_live_workers", "Workers of the queue, in any process, with a heartbeat in the last 15 s.", (q) => q.liveWorkers);
  }

  /** The worker stopped: its queue is no longer reported. */
  close(): void {
    this.workers.delete(this.worker);
  }

  settled(outcome: JobOutcome, seconds: number): void {
    this.jobs.inc({ queue: this.worker.queue, outcome });
    this.seconds.observe({ queue: this.worker.queue }, seconds);
  }
}

type QueueFigures = Pick<QueueDescription, "queue" | "ready" | "inFlight" | "delayed" | "dead" | "oldestReadyAgeSeconds" | "liveWorkers">;

async function queueFigures(workers: readonly Worker[]): Promise<QueueFigures[]> {
  const seen = new Set<string>();
  const figures: QueueFigures[] = [];
  for (const w of workers) {
    if (seen.has(w.queue)) continue;
    seen.add(w.queue);
    // A failed read reports nothing of the queue rather than stale figures.
    const [q] = await describeQueues(w.sql, { queue: w.queue }).catch(() => []);
    if (q) figures.push(q);
  }
  return figures;
}
