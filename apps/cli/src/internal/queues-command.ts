/**
 * `tributary queues`: queues with their counts, live workers and schedules;
 * `queues dead` lists a queue's dead letters; `queues redrive` puts them back
 * (tributary.redrive). The reads and the redrive are the client's queue
 * administration (packages/client queue-admin.ts).
 */
import type { Sql } from "postgres";
import {
  connectPostgres, describeQueues, listDeadLetters, redriveDeadLetters, TributaryQueueError,
  type DeadLetter, type QueueDescription, type QueueRedrive,
} from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { cliMessage } from "./cli-errors.ts";
import { formatRate, formatSeconds, hasQueues } from "./status-query.ts";
import { columns } from "./text-columns.ts";

const listUsage = `Usage: tributary queues [--database-url URL] [--queue NAME] [--json]
       tributary queues dead QUEUE [--limit N] [--json]
       tributary queues redrive QUEUE --id N [--id N ...] | --all

Every queue with its settings (FIFO, visibility timeout, max deliveries, the
stream that feeds it), its messages by state, its live workers and its cron
schedules. By the database's clock, a message is
  ready       claimable now: the queue's depth (oldest ready: since it was sent)
  in flight   claimed, its visibility timeout not expired
  delayed     waiting for its delay, run_at or retry backoff
  dead        in the dead letters after max deliveries
A worker is live with a heartbeat in the last 15 s; RATE is its acked messages
per second since it started.

  --database-url URL   PostgreSQL to inspect (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --queue NAME         only this queue
  --json               one JSON object per queue per line, for programs

Run \`tributary queues dead --help\` and \`tributary queues redrive --help\` for dead letters.`;

const deadUsage = `Usage: tributary queues dead QUEUE [--limit N] [--database-url URL] [--json]

The dead letters of QUEUE, oldest first: messages whose every delivery (max
deliveries of them) failed or expired, with the last error.

  --limit N            at most N dead letters (default 100)
  --database-url URL   PostgreSQL to inspect (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --json               one JSON object per dead letter per line, with its
                       payload and delivery history (at, worker, error)`;

const redriveUsage = `Usage: tributary queues redrive QUEUE --id N [--id N ...] [--database-url URL] [--json]
       tributary queues redrive QUEUE --all [--database-url URL] [--json]

Puts dead letters back into QUEUE as ready messages with their deliveries
reset (tributary.redrive), and prints how many.

  --id N               this dead letter (repeat for more; ids from \`tributary queues dead\`)
  --all                every dead letter of the queue
  --database-url URL   PostgreSQL to change (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --json               print the result as one JSON object`;

export async function queuesCommand(argv: string[]): Promise<void> {
  if (argv[0] === "dead") return deadCommand(argv.slice(1));
  if (argv[0] === "redrive") return redriveCommand(argv.slice(1));
  const { values, positionals } = parse(argv, { ...databaseUrlOption, queue: { type: "string" }, json: { type: "boolean" } }, listUsage);
  if (positionals.length > 0) throw new UsageError(`unknown subcommand '${positionals[0]}'\n\n${listUsage}`);
  await withDatabase(databaseUrl(values), async (sql) => {
    const queues = await describeQueues(sql, values.queue === undefined ? {} : { queue: values.queue });
    if (values.json) {
      process.stdout.write(queues.map((q) => JSON.stringify(q) + "\n").join(""));
      return;
    }
    process.stdout.write(queues.length === 0 ? "(no queues: create one with tributary.create_queue(name, options))\n" : queues.map(formatQueue).join("\n"));
  });
}

async function deadCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, limit: { type: "string" }, json: { type: "boolean" } }, deadUsage);
  const queue = oneQueue(positionals, deadUsage);
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (values.limit !== undefined && !(/^[0-9]+$/.test(values.limit) && Number.isSafeInteger(limit) && limit >= 1)) {
    throw new UsageError(`--limit must be a positive whole number, not '${values.limit}'`);
  }
  await withDatabase(databaseUrl(values), async (sql) => {
    const { total, deadLetters } = await listDeadLetters(sql, queue, { limit });
    if (values.json) {
      process.stdout.write(deadLetters.map((d) => JSON.stringify(deadLetterJson(d)) + "\n").join(""));
      return;
    }
    process.stdout.write(formatDeadLetters(queue, total, deadLetters));
  });
}

async function redriveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    { ...databaseUrlOption, id: { type: "string", multiple: true }, all: { type: "boolean" }, json: { type: "boolean" } },
    redriveUsage,
  );
  const queue = oneQueue(positionals, redriveUsage);
  const ids = values.id ?? [];
  if (ids.length > 0 && values.all) throw new UsageError(`give --id or --all, not both\n\n${redriveUsage}`);
  if (ids.length === 0 && !values.all) {
    throw new UsageError(`say which dead letters to redrive: --id N (repeatable) or --all\n\n${redriveUsage}`);
  }
  for (const id of ids) {
    if (!/^[0-9]{1,19}$/.test(id) || BigInt(id) > 9223372036854775807n) throw new UsageError(`--id must be a dead letter's id (a whole number), not '${id}'`);
  }
  await withDatabase(databaseUrl(values), async (sql) => {
    const result = await redriveDeadLetters(sql, queue, values.all ? undefined : ids);
    process.stdout.write(values.json ? JSON.stringify({ ...result, missing: result.missing.map(Number) }) + "\n" : formatRedrive(result));
    if (result.missing.length > 0 && !values.json) {
      process.stderr.write(`not dead letters of queue '${queue}' (already redriven, or never dead): ${result.missing.join(", ")}\n`);
    }
  });
}

function oneQueue(positionals: string[], usage: string): string {
  if (positionals.length !== 1) {
    throw new UsageError(`${positionals.length === 0 ? "no queue given" : `one queue at a time, not ${positionals.join(" ")}`}\n\n${usage}`);
  }
  return positionals[0]!;
}

async function withDatabase(url: string, body: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = connectPostgres(url, { max: 1, onnotice: () => {} });
  try {
    if (!(await hasQueues(sql))) {
      throw new Error("this database has no queues schema (tributary.queues): run tributary migrate to bring the schema up to date");
    }
    await body(sql).catch(asUsageError);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** The SQL API's rule errors (unknown queue, …) are the caller's to fix: exit 2 with its message and hint. */
function asUsageError(error: unknown): never {
  if (error instanceof TributaryQueueError) throw new UsageError(cliMessage(error));
  throw error;
}

/** A dead letter as --json prints it: the id a number, as `queues dead` and `redrive --id` show it. */
function deadLetterJson(d: DeadLetter) {
  return {
    id: Number(d.id), key: d.key, deliveries: d.deliveries, lastError: d.lastError, enqueuedAt: d.enqueuedAt, deadAt: d.deadAt,
    payload: d.payload, history: d.history, headers: d.headers,
  };
}

/** A setting: "30 s", "1.5 s", "5 min", "90 s", "2 h". */
function duration(s: number): string {
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${Number(s.toFixed(3))} s`;
}

function formatQueue(q: QueueDescription): string {
  const kind = [q.fifo ? "fifo" : null, q.stream === null ? null : `fed by stream ${q.stream}`].filter((x) => x !== null);
  const lines = [
    `QUEUE ${q.queue}${kind.length > 0 ? ` (${kind.join(", ")})` : ""}  visibility ${duration(q.visibilityTimeoutSeconds)}  ` +
      `max deliveries ${q.maxDeliveries}  backoff ${duration(q.backoff.baseSeconds)} to ${duration(q.backoff.maxSeconds)} ±${Math.round(q.backoff.jitter * 100)}%`,
    `  ready ${q.ready}  in flight ${q.inFlight}  delayed ${q.delayed}  dead ${q.dead}  ` +
      `oldest ready ${q.oldestReadyAgeSeconds === null ? "-" : formatSeconds(q.oldestReadyAgeSeconds)}`,
  ];
  if (q.workers.length === 0) lines.push("  (no live workers)");
  else {
    lines.push(...columns(
      ["WORKER", "CONCURRENCY", "IN FLIGHT", "SUCCEEDED", "FAILED", "RATE", "LAST HEARTBEAT"],
      q.workers.map((w) => [
        w.worker, String(w.concurrency), String(w.inFlight), String(w.succeeded), String(w.failed), formatRate(w.succeededPerSecond), w.heartbeatAt.toISOString(),
      ]),
      "lrrrrrl",
    ));
  }
  if (q.schedules.length > 0) {
    lines.push(...columns(
      ["SCHEDULE", "CRON", "NEXT RUN", "LAST RUN"],
      q.schedules.map((s) => [s.name, s.cron, s.nextRunAt.toISOString(), s.lastRunAt?.toISOString() ?? "-"]),
      "llll",
    ));
  }
  return lines.join("\n") + "\n";
}

function formatDeadLetters(queue: string, total: number, deadLetters: readonly DeadLetter[]): string {
  if (total === 0) return `(no dead letters in queue '${queue}')\n`;
  const lines = columns(
    ["ID", "KEY", "DELIVERIES", "DEAD AT", "LAST ERROR"],
    deadLetters.map((d) => [d.id, d.key ?? "-", String(d.deliveries), d.deadAt.toISOString(), oneLine(d.lastError)]),
    "rlrll",
  );
  if (deadLetters.length < total) lines.push(`  (${deadLetters.length} of ${total} shown: raise --limit for more)`);
  return lines.join("\n") + "\n";
}

/** An error as one line of at most 120 characters. */
function oneLine(text: string | null): string {
  if (text === null) return "-";
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}

function formatRedrive(r: QueueRedrive): string {
  return `redrove ${r.redriven} dead letter${r.redriven === 1 ? "" : "s"} back into queue '${r.queue}'\n`;
}
