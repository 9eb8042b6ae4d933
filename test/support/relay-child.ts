/**
 * A relay in its own process, for kill -9 and memory tests. Configured by env:
 *   DATABASE_URL, SLOT, MAX_BATCH_EVENTS, TAKEOVER_AFTER_MS, SNAPSHOT_CHUNK_ROWS, SNAPSHOT_POLL_MS
 *   CRASH_AT=before-write|after-commit|after-ack  CRASH_AFTER_BATCHES=N
 *     SIGKILL itself at that point of the N-th batch write (fault injection).
 * Prints "active" on stdout when it leads, and "rss <bytes>" every 200 ms when
 * REPORT_RSS=1.
 */
import { startRelay } from "@tributary/relay";

const crashAt = process.env.CRASH_AT;
const crashAfter = Number(process.env.CRASH_AFTER_BATCHES ?? 0);
let batches = 0;

const crash = () => {
  process.kill(process.pid, "SIGKILL");
};

const handle = startRelay({
  databaseUrl: process.env.DATABASE_URL!,
  slotName: process.env.SLOT!,
  maxBatchEvents: Number(process.env.MAX_BATCH_EVENTS ?? 5000),
  standbyPollMs: 200,
  ...(process.env.TAKEOVER_AFTER_MS ? { takeoverAfterMs: Number(process.env.TAKEOVER_AFTER_MS) } : {}),
  ...(process.env.SNAPSHOT_CHUNK_ROWS ? { snapshotChunkRows: Number(process.env.SNAPSHOT_CHUNK_ROWS) } : {}),
  ...(process.env.SNAPSHOT_POLL_MS ? { snapshotPollMs: Number(process.env.SNAPSHOT_POLL_MS) } : {}),
  log: (m) => process.stderr.write(`[relay-child ${process.pid}] ${m}\n`),
  onActive: () => process.stdout.write("active\n"),
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
  setInterval(() => process.stdout.write(`rss ${process.memoryUsage.rss()}\n`), 200).unref();
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
