/**
 * One consumer group member in its own process, for bench:consumer
 * (bundled with esbuild by consumer-process.ts). The handler does nothing but
 * bookkeeping, so the figures are the consumer's. Configured by env:
 *
 *   DATABASE_URL, GROUP, STREAMS (comma-separated), BATCH_SIZE, CONCURRENCY,
 *   SESSION_TIMEOUT_MS, HANDLER (each: the handler option, the default;
 *   batch: the batchHandler option), MODE:
 *     catchup   counts events and checks offsets are dense per partition
 *               (each event seen once, none missing); prints "done {…}" when
 *               EXPECT_EVENTS distinct events were handled, with its CPU
 *               time, peak RSS and the time its queries took (QUERY_TIMING)
 *     report    reports every handled event (stream, partition, offset,
 *               committedAt, Date.now() in the handler), flushed every 50 ms
 *   METRICS=1  the member's metrics (ConsumerOptions.metrics) on a registry
 *     with the process's default metrics, served on a free port; prints
 *     "metrics <url>" before the consumer() call.
 *
 * stdout lines: "metrics <url>", "joined {memberId, callAt, joinedAt}", "rss <bytes>" every
 * 200 ms, "progress <n>", "done {…}", "events s|p|o|committedMs|handledMs;…",
 * "error <message>". Times are epoch ms (Date.now()): the driver, this child
 * and the server share one machine clock.
 */
import { readFileSync } from "node:fs";
import postgres, { type Sql } from "postgres";
import { collectDefaultMetrics, Registry } from "prom-client";
import { consumer, type StreamEvent } from "@tributary/client";
import { serveMetrics } from "@tributary/core";

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`consumer child: ${name} is not set`);
  return value;
};
const mode = env("MODE");
const expected = Number(env("EXPECT_EVENTS", "0"));
const print = (line: string) => process.stdout.write(line + "\n");

/** Wall time of the consumer's queries by kind, timed from the call to the resolved rows (queueing for a connection included). */
interface QueryTiming {
  count: number;
  ms: number;
  rows: number;
}
const timings: Record<"fetch" | "commit" | "other", QueryTiming> = {
  fetch: { count: 0, ms: 0, rows: 0 },
  commit: { count: 0, ms: 0, rows: 0 },
  other: { count: 0, ms: 0, rows: 0 },
};
const kindOf = (text: string): keyof typeof timings =>
  text.includes("cross join lateral") ? "fetch" : text.includes("insert into tributary.group_offsets") ? "commit" : "other";

/**
 * Times the tagged-template queries the consumer runs on `sql` itself
 * (fetches, single-partition commits, offset loads); queries inside
 * sql.begin (heartbeats) run on the transaction and are not seen.
 */
function timed(sql: Sql): Sql {
  return new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const query = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args);
      const strings = args[0] as TemplateStringsArray | undefined;
      if (!Array.isArray(strings) || !("raw" in strings)) return query;
      const kind = timings[kindOf(strings.join("?"))];
      const started = performance.now();
      // The consumer awaits every query it makes at once, so then() here starts nothing early.
      void (query as Promise<unknown[]>).then(
        (rows) => {
          kind.count++;
          kind.ms += performance.now() - started;
          kind.rows += Array.isArray(rows) ? rows.length : 0;
        },
        () => undefined,
      );
      return query;
    },
  });
}

// ── catchup: count and check density ──────────────────────────────────────
const nextOffset = new Map<string, number>();
/** Per partition: when its first and its latest event were handled (Date.now()). */
const spans = new Map<string, [number, number]>();
let handled = 0;
let duplicates = 0;
let lastHandledAt = 0;
let cpuAtCall: NodeJS.CpuUsage | null = null;
let hrAtCall = 0n;
let doneSent = false;

function countEvent(event: StreamEvent): void {
  const key = `${event.stream}/${event.partition}`;
  const want = nextOffset.get(key) ?? 0;
  if (event.offset === want) {
    nextOffset.set(key, want + 1);
    handled++;
    const now = Date.now();
    const span = spans.get(key);
    if (span) span[1] = now;
    else spans.set(key, [now, now]);
  } else if (event.offset < want) {
    duplicates++; // at-least-once allows a redelivery; counted, not handled twice
  } else {
    print(`error gap in ${key}: got offset ${event.offset}, expected ${want}`);
    process.exit(4);
  }
  if (handled === expected && !doneSent) {
    doneSent = true;
    lastHandledAt = Date.now();
    const hrAtDone = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpuAtCall!);
    print(`done ${JSON.stringify({
      handled, duplicates, partitions: nextOffset.size, lastHandledAt,
      spans: [...spans.values()],
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      peakRssBytes: peakRss(),
      // process.hrtime and the V8 profile's timestamps share CLOCK_MONOTONIC (µs here).
      windowUs: [Number(hrAtCall / 1000n), Number(hrAtDone / 1000n)],
      timings,
    })}`);
  }
}

/** VmHWM: the process's peak resident set since it started. */
function peakRss(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return match ? Number(match[1]) * 1024 : process.memoryUsage.rss();
}

// ── report: every handled event, batched onto stdout ──────────────────────
let pending: string[] = [];
function reportEvent(event: StreamEvent): void {
  pending.push(`${event.stream}|${event.partition}|${event.offset}|${event.committedAt.getTime()}|${Date.now()}`);
}
if (mode === "report") {
  setInterval(() => {
    if (pending.length === 0) return;
    print(`events ${pending.join(";")}`);
    pending = [];
  }, 50).unref();
}

const rawSql = postgres(env("DATABASE_URL"), { max: 10, onnotice: () => {}, connection: { application_name: env("APPLICATION_NAME", "bench-consumer") } });
const sql = process.env.QUERY_TIMING === "1" ? timed(rawSql) : rawSql;
setInterval(() => print(`rss ${process.memoryUsage.rss()}`), 200).unref();
setInterval(() => print(`progress ${handled}`), 2000).unref();

let metrics: Registry | undefined;
if (process.env.METRICS === "1") {
  metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  print(`metrics ${(await serveMetrics(metrics, { port: 0 })).url}`);
}

const onEvent = mode === "catchup" ? countEvent : reportEvent;
const callAt = Date.now();
cpuAtCall = process.cpuUsage();
hrAtCall = process.hrtime.bigint();
const member = await consumer(sql, {
  group: env("GROUP"),
  streams: env("STREAMS").split(","),
  batchSize: Number(env("BATCH_SIZE")),
  concurrency: Number(env("CONCURRENCY")),
  sessionTimeoutMs: Number(env("SESSION_TIMEOUT_MS", "10000")),
  log: (m) => process.stderr.write(`[bench consumer ${process.pid}] ${m}\n`),
  ...(metrics ? { metrics } : {}),
  ...(env("HANDLER", "each") === "batch"
    ? { batchHandler: (events: StreamEvent[]) => events.forEach(onEvent) }
    : { handler: onEvent }),
});
print(`joined ${JSON.stringify({ memberId: member.memberId, callAt, joinedAt: Date.now() })}`);

const stop = () => void member.stop().then(() => rawSql.end({ timeout: 5 })).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
member.done.catch((error: unknown) => {
  print(`error fatal: ${(error as Error)?.message ?? error}`);
  process.exit(3);
});
