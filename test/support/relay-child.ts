/**
 * A relay in its own process, for kill -9 and memory tests. Configured by env:
 *   DATABASE_URL, SLOT, MAX_BATCH_EVENTS, TAKEOVER_AFTER_MS, SNAPSHOT_CHUNK_ROWS, SNAPSHOT_POLL_MS, RETENTION_INTERVAL_MS
 *   METRICS=1  the relay's metrics on a registry with the process's default
 *     metrics, as `tributary relay --metrics-port` has them, served on a free
 *     port: prints "metrics <url>" before it starts the relay.
 *   CRASH_AT=before-write|after-commit|after-ack  CRASH_AFTER_BATCHES=N
 *     SIGKILL itself at that point of the N-th batch write (fault injection).
 * Prints "active" on stdout when it leads, and "rss <bytes>" every 200 ms when
 * REPORT_RSS=1, with "gc <scavenge ms> <scavenges> <other ms> <others>": the
 * main thread's GC pauses since "active" (perf_hooks), for the benchmarks.
 */
import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { collectDefaultMetrics, Registry } from "prom-client";
import { serveMetrics } from "@tributary/core";
import { startRelay } from "@tributary/relay";

const gc = { scavengeMs: 0, scavenges: 0, otherMs: 0, others: 0 };

const crashAt = process.env.CRASH_AT;
const crashAfter = Number(process.env.CRASH_AFTER_BATCHES ?? 0);
let batches = 0;

const crash = () => {
  process.kill(process.pid, "SIGKILL");
};

let metrics: Registry | undefined;
if (process.env.METRICS === "1") {
  metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  const endpoint = await serveMetrics(metrics, { port: 0 });
  process.stdout.write(`metrics ${endpoint.url}\n`);
}

const handle = startRelay({
  databaseUrl: process.env.DATABASE_URL!,
  slotName: process.env.SLOT!,
  maxBatchEvents: Number(process.env.MAX_BATCH_EVENTS ?? 5000),
  standbyPollMs: 200,
  ...(metrics ? { metrics } : {}),
  ...(process.env.TAKEOVER_AFTER_MS ? { takeoverAfterMs: Number(process.env.TAKEOVER_AFTER_MS) } : {}),
  ...(process.env.SNAPSHOT_CHUNK_ROWS ? { snapshotChunkRows: Number(process.env.SNAPSHOT_CHUNK_ROWS) } : {}),
  ...(process.env.SNAPSHOT_POLL_MS ? { snapshotPollMs: Number(process.env.SNAPSHOT_POLL_MS) } : {}),
  ...(process.env.RETENTION_INTERVAL_MS ? { retentionIntervalMs: Number(process.env.RETENTION_INTERVAL_MS) } : {}),
  log: (m) => process.stderr.write(`[relay-child ${process.pid}] ${m}\n`),
  onActive: () => {
    Object.assign(gc, { scavengeMs: 0, scavenges: 0, otherMs: 0, others: 0 });
    process.stdout.write("active\n");
  },
  hooks: {
    beforeWrite: () => {
      batches++;
      if (crashAt === "before-write" && batches >= crashAfter) crash();
    },
    afterCommit: () => {
      if (crashAt === "after-commit" && batches >= crashAfter) crash();
    },
    afterAck: async () => {
      if (crashAt === "after-ack" && batches >= crashAfter) {
        await new Promise((r) => setTimeout(r, 50)); // let the status update reach the server
        crash();
      }
    },
  },
});

if (process.env.REPORT_RSS === "1") {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        gc.scavengeMs += entry.duration;
        gc.scavenges++;
      } else {
        gc.otherMs += entry.duration;
        gc.others++;
      }
    }
  }).observe({ entryTypes: ["gc"] });
  setInterval(() => {
    process.stdout.write(`rss ${process.memoryUsage.rss()}\n`);
    process.stdout.write(`gc ${gc.scavengeMs.toFixed(1)} ${gc.scavenges} ${gc.otherMs.toFixed(1)} ${gc.others}\n`);
  }, 200).unref();
}

const stop = () => void handle.stop().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
handle.done.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`[relay-child] fatal: ${(error as Error)?.message ?? error}\n`);
    process.exit(3);
  },
);
