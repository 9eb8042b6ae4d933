/**
 * A consumer group member in its own process, for kill -9 and SIGSTOP tests.
 * Configured by env:
 *   DATABASE_URL, GROUP, STREAMS (comma-separated), LABEL (for the log),
 *   SESSION_TIMEOUT_MS, BATCH_SIZE, MODE = log | transactional
 * log:           batch handler; inserts each event into consumer_log
 *                (label, stream, partition, offset, id) in autocommit, then
 *                the consumer commits the offset (at-least-once).
 * transactional: batch handler in the consumer's transaction; adds the batch
 *                size to consumer_counter and its ids to consumer_processed.
 * Prints "joined" on stdout once it is a member.
 */
import postgres from "postgres";
import { consumer } from "@tributary/client";

const sql = postgres(process.env.DATABASE_URL!, { max: 4, onnotice: () => {} });
const label = process.env.LABEL ?? String(process.pid);
const transactional = process.env.MODE === "transactional";

const member = await consumer(sql, {
  group: process.env.GROUP!,
  streams: process.env.STREAMS!.split(","),
  sessionTimeoutMs: Number(process.env.SESSION_TIMEOUT_MS ?? 10_000),
  batchSize: Number(process.env.BATCH_SIZE ?? 100),
  transactional,
  log: (m) => process.stderr.write(`[consumer ${label}] ${m}\n`),
  batchHandler: async (events, { tx }) => {
    if (transactional) {
      await tx!`update consumer_counter set n = n + ${events.length}`;
      await tx!`insert into consumer_processed (id) select unnest(${events.map((e) => e.id)}::uuid[])`;
      return;
    }
    await sql`
      insert into consumer_log (label, stream, partition, "offset", id)
      select ${label}, unnest(${events.map((e) => e.stream)}::text[]), unnest(${events.map((e) => e.partition)}::int[]),
             unnest(${events.map((e) => e.offset)}::bigint[]), unnest(${events.map((e) => e.id)}::uuid[])`;
  },
});
process.stdout.write("joined\n");

const stop = () => void member.stop().then(() => sql.end()).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
member.done.catch((error: unknown) => {
  process.stderr.write(`[consumer ${label}] fatal: ${(error as Error)?.message ?? error}\n`);
  process.exit(3);
});
