/**
 * A queue worker in its own process, for kill -9 tests. Configured by env:
 *   DATABASE_URL, QUEUE, CONCURRENCY, LABEL
 * The handler records the message in worker_log (label, message id, payload n)
 * in autocommit, sleeps 0-30 ms, then returns (the worker acks).
 * Prints "working" on stdout once registered.
 */
import postgres from "postgres";
import { work } from "@tributary/client";

const sql = postgres(process.env.DATABASE_URL!, { max: 4, onnotice: () => {} });
const label = process.env.LABEL ?? String(process.pid);
const worker = await work<{ n: number }>(sql, process.env.QUEUE!, async (message) => {
  await new Promise((r) => setTimeout(r, Math.random() * 30));
  await sql`insert into worker_log (label, message_id, n) values (${label}, ${message.id}::bigint, ${message.payload.n})`;
}, { concurrency: Number(process.env.CONCURRENCY ?? 4), worker: label, log: (m) => process.stderr.write(`[worker ${label}] ${m}\n`) });
process.stdout.write("working\n");
const stop = () => void worker.stop().then(() => sql.end()).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
