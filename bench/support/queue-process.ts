/**
 * The queue workers of bench:queue in their own OS process
 * (queue-worker-child.ts), so their CPU time is their own and they do not
 * share an event loop with the producer. The child is bundled once with
 * esbuild (testkit's ChildBundle; Tributary's client, pg-boss,
 * graphile-worker and their drivers in one file): plain JavaScript, no
 * loader in the process.
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ChildBundle, ChildLines, spawnChild } from "@tributary/testkit";

export type QueueSystemName = "tributary" | "pgboss" | "graphile";

export interface ClaimWindow {
  /** Driver time (epoch ms) when the window's line arrived. */
  readonly at: number;
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly rows: number;
}

export interface WorkerSettings {
  readonly concurrency: number;
  /** Tributary: work()'s `batch` option (0: its default). */
  readonly tributaryBatch: number;
  /** Tributary: work()'s `prefetch` option (null: its default). */
  readonly tributaryPrefetch: number | null;
  /** pg-boss: jobs per fetch (batchSize) of each of its `concurrency` workers. */
  readonly pgbossBatch: number;
  /** graphile-worker: localQueue.size (≤ 1: off). */
  readonly graphileLocalQueue: number;
  /** graphile-worker: completeJobBatchDelay ms (-1: off). */
  readonly graphileCompleteDelay: number;
}

export interface WorkerProcessOptions {
  readonly system: QueueSystemName;
  readonly databaseUrl: string;
  readonly queue: string;
  /** Jobs carry seq 0…expect-1. */
  readonly expect: number;
  readonly mode: "count" | "latency";
  readonly settings: WorkerSettings;
  readonly claimWindowMs?: number;
  readonly onSeen?: (seq: number, at: number) => void;
  readonly onClaims?: (window: ClaimWindow) => void;
}

export class QueueWorkerProcess {
  readonly ready: Promise<{ startedAt: number; readyAt: number }>;
  readonly exited: Promise<number | null>;
  handled = 0;
  duplicates = 0;
  cpuSeconds = 0;
  peakRss = 0;
  private startedAt = 0;
  private readonly lines: ChildLines;

  constructor(child: ChildProcess, options: WorkerProcessOptions) {
    this.lines = new ChildLines(child, {
      label: `${options.system} worker`,
      onLine: (tag, rest) => {
        if (tag === "progress") {
          const [handled, duplicates, cpu, rss] = rest.split(" ").map(Number);
          this.handled = handled!;
          this.duplicates = duplicates!;
          this.cpuSeconds = cpu!;
          this.peakRss = Math.max(this.peakRss, rss!);
        } else if (tag === "seen") {
          for (const item of rest.split(";")) {
            const bar = item.indexOf("|");
            options.onSeen?.(Number(item.slice(0, bar)), Number(item.slice(bar + 1)));
          }
        } else if (tag === "claims") {
          const [count, p50, p99, max, rows] = rest.split(" ").map(Number);
          options.onClaims?.({ at: Date.now(), count: count!, p50Ms: p50!, p99Ms: p99!, maxMs: max!, rows: rows! });
        } else if (tag === "started") this.startedAt = Number(rest);
      },
    });
    this.ready = this.lines.once("ready", (rest) => ({ startedAt: this.startedAt, readyAt: Number(rest) }));
    this.exited = this.lines.exited;
  }

  get pid(): number {
    return this.lines.pid;
  }

  /** Throws if the child reported an error or died. */
  check(): void {
    const failure = this.lines.failure();
    if (failure) throw failure;
  }

  stderr(): string {
    return this.lines.stderr();
  }

  /** SIGTERM (the worker stops cleanly), SIGKILL after `graceMs`. */
  async stop(graceMs = 20_000): Promise<number | null> {
    return this.lines.stop(graceMs);
  }
}

/** The bundled child; build once per benchmark run. */
export class QueueWorkerLauncher {
  private constructor(private readonly bundle: ChildBundle) {}

  /** `clientSource`: bundle against another copy of @tributary/client (its src/index.ts), e.g. a proposed patch. */
  static async build(clientSource?: string): Promise<QueueWorkerLauncher> {
    return new QueueWorkerLauncher(await ChildBundle.build({
      prefix: "tributary-bench-queue-",
      entries: { "queue-worker-child": fileURLToPath(new URL("./queue-worker-child.ts", import.meta.url)) },
      alias: clientSource ? { "@tributary/client": clientSource } : {},
    }));
  }

  get script(): string {
    return this.bundle.script("queue-worker-child");
  }

  start(options: WorkerProcessOptions): QueueWorkerProcess {
    const child = spawnChild(this.script, {
      env: {
        SYSTEM: options.system,
        DATABASE_URL: options.databaseUrl,
        QUEUE: options.queue,
        CONCURRENCY: String(options.settings.concurrency),
        EXPECT: String(options.expect),
        MODE: options.mode,
        CLAIM_WINDOW_MS: String(options.claimWindowMs ?? 0),
        TRIBUTARY_BATCH: String(options.settings.tributaryBatch),
        TRIBUTARY_PREFETCH: options.settings.tributaryPrefetch === null ? "" : String(options.settings.tributaryPrefetch),
        PGBOSS_BATCH: String(options.settings.pgbossBatch),
        GRAPHILE_LOCAL_QUEUE: String(options.settings.graphileLocalQueue),
        GRAPHILE_COMPLETE_DELAY: String(options.settings.graphileCompleteDelay),
      },
    });
    return new QueueWorkerProcess(child, options);
  }

  dispose(): void {
    this.bundle.dispose();
  }
}
