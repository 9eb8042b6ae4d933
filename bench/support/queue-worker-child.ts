/**
 * One queue system's workers in their own process, for bench:queue (bundled
 * with esbuild by queue-process.ts): Tributary `work()`, pg-boss
 * `boss.work()` or graphile-worker `run()`, each with a no-op handler that
 * only does the benchmark's bookkeeping. Configured by env:
 *
 *   SYSTEM (tributary | pgboss | graphile), DATABASE_URL, QUEUE (the queue,
 *   queue name or task identifier), CONCURRENCY, EXPECT (jobs carry seq
 *   0…EXPECT-1: duplicates are counted), MODE (count | latency),
 *   CLAIM_WINDOW_MS (claim timings are reported per window),
 *   TRIBUTARY_BATCH (work()'s batch option; 0: its default), TRIBUTARY_PREFETCH
 *   (work()'s prefetch option; empty: its default), PGBOSS_BATCH,
 *   GRAPHILE_LOCAL_QUEUE, GRAPHILE_COMPLETE_DELAY.
 *
 * stdout lines: "started <t>" (just before the worker is started),
 * "ready <t>", "progress <handled> <duplicates> <cpuSeconds> <rss>" every
 * 100 ms, "seen seq|t;…" (latency mode, every 20 ms: when each job's handler
 * started), "claims <count> <p50> <p99> <max> <rows>" every CLAIM_WINDOW_MS,
 * "stopped", "error <message>". Times are epoch ms with µs
 * (performance.timeOrigin + performance.now()): the driver shares the clock.
 *
 * Claim timing: the wall time of each claim query as the worker sees it
 * (queueing for a pool connection included): Tributary's
 * `tributary.claim(…)` through a proxy around its postgres.js `sql`; pg-boss's
 * fetch and graphile-worker's get_jobs by wrapping pg's Client#query (both
 * use pg), recognised by their FOR UPDATE … SKIP LOCKED.
 */
import pg from "pg";
import postgres, { type Sql } from "postgres";
import { work } from "@tributary/client";
import { PgBoss } from "pg-boss";
import { Logger, run } from "graphile-worker";

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`queue worker child: ${name} is not set`);
  return value;
};
const system = env("SYSTEM");
const url = env("DATABASE_URL");
const queue = env("QUEUE");
const concurrency = Number(env("CONCURRENCY", "8"));
const expect = Number(env("EXPECT", "0"));
const mode = env("MODE", "count");
const claimWindowMs = Number(env("CLAIM_WINDOW_MS", "0"));
const print = (line: string) => process.stdout.write(line + "\n");
const now = () => performance.timeOrigin + performance.now();

// ── bookkeeping: handled, duplicates, handler start times ────────────────
const seen = new Uint8Array(expect);
let handled = 0;
let duplicates = 0;
let pendingSeen: string[] = [];
function onJob(payload: { seq: number }): void {
  const at = now();
  const seq = payload.seq;
  if (seen[seq]) duplicates++;
  else {
    seen[seq] = 1;
    handled++;
  }
  if (mode === "latency") pendingSeen.push(`${seq}|${at.toFixed(3)}`);
}
const cpuAtStart = process.cpuUsage();
setInterval(() => {
  const cpu = process.cpuUsage(cpuAtStart);
  print(`progress ${handled} ${duplicates} ${((cpu.user + cpu.system) / 1e6).toFixed(3)} ${process.memoryUsage.rss()}`);
}, 100).unref();
if (mode === "latency") {
  setInterval(() => {
    if (pendingSeen.length === 0) return;
    print(`seen ${pendingSeen.join(";")}`);
    pendingSeen = [];
  }, 20).unref();
}

// ── claim timings ─────────────────────────────────────────────────────────
let claimTimes: number[] = [];
let claimRows = 0;
function recordClaim(ms: number, rows: number): void {
  claimTimes.push(ms);
  claimRows += rows;
}
if (claimWindowMs > 0) {
  setInterval(() => {
    const times = claimTimes.sort((a, b) => a - b);
    const at = (q: number) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))]! : 0);
    print(`claims ${times.length} ${at(0.5).toFixed(3)} ${at(0.99).toFixed(3)} ${(times.at(-1) ?? 0).toFixed(3)} ${claimRows}`);
    claimTimes = [];
    claimRows = 0;
  }, claimWindowMs).unref();
}

/** Times `select … from tributary.claim(…)` made through `sql` (the worker awaits each at once). */
function timedClaims(sql: Sql): Sql {
  return new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const query = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args);
      const strings = args[0] as TemplateStringsArray | undefined;
      if (!Array.isArray(strings) || !("raw" in strings) || !strings.join("?").includes("tributary.claim(")) return query;
      const started = performance.now();
      void (query as Promise<unknown[]>).then((rows) => recordClaim(performance.now() - started, rows.length), () => undefined);
      return query;
    },
  });
}

/** Times pg queries whose text matches `pattern` (pg-boss's fetch, graphile-worker's get_jobs). */
function timePgQueries(pattern: RegExp): void {
  const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  type Result = { rows?: unknown[] } | undefined;
  (pg.Client.prototype as unknown as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0] as string | { text?: string } | undefined;
    const text = typeof first === "string" ? first : first?.text;
    if (!text || !pattern.test(text)) return original.apply(this, args);
    const started = performance.now();
    // pg-Pool#query calls Client#query with a callback; graphile-worker awaits the promise.
    const last = args.length - 1;
    if (typeof args[last] === "function") {
      const callback = args[last] as (error: unknown, result: Result) => void;
      args[last] = (error: unknown, result: Result) => {
        if (!error) recordClaim(performance.now() - started, result?.rows?.length ?? 0);
        callback(error, result);
      };
      return original.apply(this, args);
    }
    const result = original.apply(this, args);
    if (result && typeof (result as Promise<unknown>).then === "function") {
      void (result as Promise<Result>).then((r) => recordClaim(performance.now() - started, r?.rows?.length ?? 0), () => undefined);
    }
    return result;
  };
}

// ── the systems ───────────────────────────────────────────────────────────
async function startTributary(): Promise<() => Promise<void>> {
  const raw = postgres(url, { max: 10, onnotice: () => {}, connection: { application_name: "bench-queue-tributary" } });
  const sql = claimWindowMs > 0 ? timedClaims(raw) : raw;
  print(`started ${now().toFixed(3)}`);
  const batch = Number(env("TRIBUTARY_BATCH", "0"));
  const prefetch = env("TRIBUTARY_PREFETCH", "");
  const worker = await work<{ seq: number }>(sql, queue, (message) => onJob(message.payload), {
    concurrency,
    ...(batch > 0 ? { batch } : {}),
    ...(prefetch !== "" ? { prefetch: Number(prefetch) } : {}),
    log: (m) => process.stderr.write(`[tributary worker] ${m}\n`),
  });
  return async () => {
    await worker.stop();
    await raw.end({ timeout: 5 });
  };
}

async function startPgBoss(): Promise<() => Promise<void>> {
  if (claimWindowMs > 0) timePgQueries(/FOR UPDATE OF j SKIP LOCKED/);
  const boss = new PgBoss({
    connectionString: url,
    application_name: "bench-queue-pgboss",
    max: 10,
    migrate: false,
    schedule: false,
    useListenNotify: true,
    // Completed jobs are deleted by the supervisor (deleteAfterSeconds of the queue).
    supervise: true,
    superviseIntervalSeconds: 10,
    maintenanceIntervalSeconds: 10,
  });
  boss.on("error", (e: Error) => process.stderr.write(`[pg-boss] ${e.message}\n`));
  await boss.start();
  print(`started ${now().toFixed(3)}`);
  await boss.work<{ seq: number }>(
    queue,
    { localConcurrency: concurrency, batchSize: Number(env("PGBOSS_BATCH", "100")), pollingIntervalSeconds: 0.5, burstWhenBatchFull: true },
    async (jobs) => {
      for (const job of jobs) onJob(job.data);
    },
  );
  return async () => {
    await boss.stop({ graceful: true, timeout: 10_000 });
  };
}

async function startGraphile(): Promise<() => Promise<void>> {
  if (claimWindowMs > 0) timePgQueries(/skip locked/i);
  const localQueue = Number(env("GRAPHILE_LOCAL_QUEUE", "-1"));
  const completeDelay = Number(env("GRAPHILE_COMPLETE_DELAY", "-1"));
  print(`started ${now().toFixed(3)}`);
  const runner = await run({
    connectionString: url,
    concurrency,
    maxPoolSize: Math.max(10, concurrency + 2),
    noHandleSignals: true,
    // Only errors on stderr: its info lines would be noise in the report.
    logger: new Logger(() => (level, message) => {
      if (level === "error") process.stderr.write(`[graphile-worker] ${message}\n`);
    }),
    taskList: {
      [queue]: async (payload) => onJob(payload as { seq: number }),
    },
    preset: {
      worker: {
        ...(localQueue > 1 ? { localQueue: { size: localQueue } } : {}),
        completeJobBatchDelay: completeDelay,
      },
    },
  });
  return async () => {
    await runner.stop();
  };
}

const starters: Record<string, () => Promise<() => Promise<void>>> = { tributary: startTributary, pgboss: startPgBoss, graphile: startGraphile };
const start = starters[system];
if (!start) throw new Error(`queue worker child: unknown SYSTEM ${system}`);
let stop: () => Promise<void>;
try {
  stop = await start();
} catch (error) {
  print(`error ${(error as Error)?.stack?.replace(/\n/g, " | ") ?? error}`);
  process.exit(3);
}
print(`ready ${now().toFixed(3)}`);
const shutdown = () =>
  void stop().then(
    () => {
      print("stopped");
      process.exit(0);
    },
    (error: unknown) => {
      print(`error stop: ${(error as Error)?.message ?? error}`);
      process.exit(3);
    },
  );
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
