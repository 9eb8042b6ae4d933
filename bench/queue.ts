/**
 * npm run bench:queue — Tributary's queues side by side with pg-boss and
 * graphile-worker, in one run on one server: each system in its own
 * database, the same ~200-byte JSON payloads, the same number of concurrent
 * handlers (8, no-op), each through its own idiomatic enqueue and worker API.
 *
 *   (a) throughput: enqueue N jobs with each one's batch insert, then start
 *       its workers (own process) and time until none is left;
 *   (b) pickup latency: single enqueues at a steady rate, enqueue returned →
 *       handler started, p50 / p99;
 *   (c) churn: M messages through one queue with a bounded backlog: claim
 *       p99 and the job table's size at the start and at the end.
 *   One table; settings and versions beside the figures.
 *
 * A benchmark, not a test: it asserts only what makes its figures meaningful
 * (every job handled, the queue empty at the end).
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import postgres from "postgres";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, postmasterPid, startBenchServer } from "./support/bench-server.ts";
import { describeCpu, loadAverage } from "./support/cpu-accounting.ts";
import { measureChurn, type ChurnResult } from "./support/queue-churn.ts";
import { measurePickupLatency, type LatencyResult } from "./support/queue-latency.ts";
import { QueueWorkerLauncher, type QueueSystemName, type WorkerSettings } from "./support/queue-process.ts";
import { graphileSystem, pgbossSystem, systemLabels, tributarySystem, type QueueSystem } from "./support/queue-systems.ts";
import { measureThroughput, type ThroughputResult } from "./support/queue-throughput.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";

const usage = `npm run bench:queue -- [flags]
${serverUsage}
  --jobs N                      jobs of (a) (default 100000)
  --enqueue-batch N             jobs per batch insert in (a) and (c) (default 1000)
  --enqueue-connections N       concurrent enqueuers in (a) and (c) (default 4)
  --concurrency N               concurrent handlers of every system (default 8)
  --latency-rate N              jobs/s of (b) (default 500)
  --latency-seconds N           duration of (b) (default 15)
  --churn-messages N            messages through Tributary's queue in (c) (default 10000000)
  --churn-others N              messages through pg-boss's and graphile-worker's in (c)
                                (default 1000000; 0 leaves them out of (c))
  --churn-backlog N             at most this many jobs waiting during (c) (default 10000)
  --churn-window-ms N           claim timings and table sizes every N ms in (c) (default 10000)
  --tributary-batch N           Tributary work() batch option (default: work()'s own default)
  --tributary-prefetch N        Tributary work() prefetch option (default: work()'s own default, = concurrency)
  --pgboss-batch N              pg-boss work() batchSize of each of its workers (default 200)
  --graphile-local-queue N      graphile-worker localQueue.size (default 200; 1 = off)
  --graphile-complete-delay=N   graphile-worker completeJobBatchDelay ms (default 10; =-1: off)
  --systems a,b,…               which systems (default tributary,pgboss,graphile)
  --skip a,b,c                  phases to leave out
  --pg-settings k=v,…           more postgresql.conf settings for this run (e.g. autovacuum_naptime=5s)
  --migrations-dir PATH         Tributary's schema from another copy of migrations/ (a proposed change)
  --client-src PATH             Tributary's workers from another copy of @tributary/client (its src/index.ts)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    jobs: { type: "string", default: "100000" },
    "enqueue-batch": { type: "string", default: "1000" },
    "enqueue-connections": { type: "string", default: "4" },
    concurrency: { type: "string", default: "8" },
    "latency-rate": { type: "string", default: "500" },
    "latency-seconds": { type: "string", default: "15" },
    "churn-messages": { type: "string", default: "10000000" },
    "churn-others": { type: "string", default: "1000000" },
    "churn-backlog": { type: "string", default: "10000" },
    "churn-window-ms": { type: "string", default: "10000" },
    "tributary-batch": { type: "string", default: "0" },
    "tributary-prefetch": { type: "string", default: "" },
    "pgboss-batch": { type: "string", default: "200" },
    "graphile-local-queue": { type: "string", default: "200" },
    "graphile-complete-delay": { type: "string", default: "10" },
    systems: { type: "string", default: "tributary,pgboss,graphile" },
    skip: { type: "string", default: "" },
    "pg-settings": { type: "string", default: "" },
    "migrations-dir": { type: "string" },
    "client-src": { type: "string" },
  },
  usage,
);
const systems = String(values.systems).split(",").filter(Boolean) as QueueSystemName[];
for (const s of systems) if (!(s in systemLabels)) throw new Error(`--systems takes tributary, pgboss, graphile; not ${s}`);
const options = {
  jobs: positiveInt(values.jobs, "jobs"),
  enqueueBatch: positiveInt(values["enqueue-batch"], "enqueue-batch"),
  enqueueConnections: positiveInt(values["enqueue-connections"], "enqueue-connections"),
  latencyRate: positiveInt(values["latency-rate"], "latency-rate"),
  latencySeconds: positiveInt(values["latency-seconds"], "latency-seconds"),
  churnMessages: positiveInt(values["churn-messages"], "churn-messages"),
  churnOthers: values["churn-others"] === "0" ? 0 : positiveInt(values["churn-others"], "churn-others"),
  churnBacklog: positiveInt(values["churn-backlog"], "churn-backlog"),
  churnWindowMs: positiveInt(values["churn-window-ms"], "churn-window-ms"),
  skip: new Set(String(values.skip).split(",").filter(Boolean)),
  pgSettings: Object.fromEntries(String(values["pg-settings"]).split(",").filter(Boolean).map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`--pg-settings takes name=value pairs, not ${pair}`);
    return [pair.slice(0, eq).trim(), `'${pair.slice(eq + 1).trim()}'`];
  })) as Record<string, string>,
  migrationsDir: typeof values["migrations-dir"] === "string" ? resolve(values["migrations-dir"]) : undefined,
  clientSource: typeof values["client-src"] === "string" ? resolve(values["client-src"]) : undefined,
};
const settings: WorkerSettings = {
  concurrency: positiveInt(values.concurrency, "concurrency"),
  tributaryBatch: values["tributary-batch"] === "0" ? 0 : positiveInt(values["tributary-batch"], "tributary-batch"),
  tributaryPrefetch: values["tributary-prefetch"] === "" ? null : Number(values["tributary-prefetch"]),
  pgbossBatch: positiveInt(values["pgboss-batch"], "pgboss-batch"),
  graphileLocalQueue: positiveInt(values["graphile-local-queue"], "graphile-local-queue"),
  graphileCompleteDelay: Number(values["graphile-complete-delay"]),
};

interface Results {
  throughput: Map<QueueSystemName, ThroughputResult>;
  latency: Map<QueueSystemName, LatencyResult>;
  churn: Map<QueueSystemName, ChurnResult>;
}

/** pg-boss and graphile-worker are bench/'s own dependencies (bench/package.json), in bench/node_modules. */
const packageVersion = (name: string) =>
  (JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")) as { version: string }).version;

const rate = (n: number, seconds: number) => `${fmt.int(n / seconds)}/s`;
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/** "Tributary 12,345/s: 1.8× pg-boss (6,789/s), 3.1× graphile-worker (…)" — higher is better unless `lowerIsBetter`. */
function lead(values: Map<QueueSystemName, number>, unit: (v: number) => string, lowerIsBetter = false): string {
  const ours = values.get("tributary");
  if (ours === undefined || values.size < 2) return "";
  const others = [...values].filter(([name]) => name !== "tributary");
  const ratio = (v: number) => (lowerIsBetter ? v / ours : ours / v);
  const verdict = others.every(([, v]) => ratio(v) > 1) ? "ahead of both" : others.some(([, v]) => ratio(v) > 1) ? "ahead of one" : "NOT ahead";
  return `${verdict}: Tributary ${unit(ours)} = ${others.map(([name, v]) => `${ratio(v).toFixed(2)}× ${systemLabels[name]} (${unit(v)})`).join(", ")}`;
}

function tableRows(results: Results): string[][] {
  const rows: string[][] = [];
  const per = (label: string, cell: (name: QueueSystemName) => string) => rows.push([label, ...systems.map(cell)]);
  const t = results.throughput;
  if (t.size) {
    per(`(a) enqueue ${fmt.int(options.jobs)} (batch insert)`, (s) => (t.get(s) ? `${rate(options.jobs, t.get(s)!.enqueueSeconds)} (${t.get(s)!.enqueueSeconds.toFixed(1)} s)` : "-"));
    per("(a) CPU µs/job while enqueueing: server + enqueuers", (s) => (t.get(s) ? `${fmt.int(((t.get(s)!.enqueueCpu.server + t.get(s)!.enqueueCpu.driver) * 1e6) / options.jobs)} (${fmt.int((t.get(s)!.enqueueCpu.server * 1e6) / options.jobs)} + ${fmt.int((t.get(s)!.enqueueCpu.driver * 1e6) / options.jobs)})` : "-"));
    per(`(a) complete ${fmt.int(options.jobs)}, ${settings.concurrency} handlers`, (s) => (t.get(s) ? `${rate(options.jobs, t.get(s)!.completeSeconds)} (${t.get(s)!.completeSeconds.toFixed(1)} s)` : "-"));
    per("(a) end-to-end (enqueue + complete)", (s) => (t.get(s) ? rate(options.jobs, t.get(s)!.enqueueSeconds + t.get(s)!.completeSeconds) : "-"));
    per("(a) CPU while completing", (s) => (t.get(s) ? describeCpu(t.get(s)!.cpu).replace("bench+children", "bench+workers") : "-"));
    per("(a) worker process CPU µs/job; peak RSS", (s) => (t.get(s) ? `${fmt.int((t.get(s)!.workerCpuSeconds * 1e6) / options.jobs)}; ${fmt.mb(t.get(s)!.workerPeakRss)}` : "-"));
    per("(a) duplicate deliveries", (s) => (t.get(s) ? fmt.int(t.get(s)!.duplicates) : "-"));
  }
  const l = results.latency;
  if (l.size) {
    per(`(b) pickup p50 / p99 / max @ ${options.latencyRate}/s`, (s) => (l.get(s) ? `${ms(l.get(s)!.p50Ms)} / ${ms(l.get(s)!.p99Ms)} / ${ms(l.get(s)!.maxMs)} ms` : "-"));
    per("(b) enqueue call p50 / p99; achieved rate", (s) => (l.get(s) ? `${ms(l.get(s)!.sendP50Ms)} / ${ms(l.get(s)!.sendP99Ms)} ms; ${fmt.int(l.get(s)!.achievedRate)}/s, ${fmt.int(l.get(s)!.samples)} samples` : "-"));
  }
  const c = results.churn;
  if (c.size) {
    const cell = (s: QueueSystemName, f: (r: ChurnResult) => string) => (c.get(s) ? f(c.get(s)!) : "-");
    per("(c) messages; duration; rate", (s) => cell(s, (r) => `${fmt.int(r.messages)}; ${r.seconds.toFixed(0)} s; ${rate(r.messages, r.seconds)}`));
    per("(c) claim p50 / p99, start window", (s) => cell(s, (r) => `${ms(r.first.p50Ms)} / ${ms(r.first.p99Ms)} ms (${fmt.int(r.first.count)} claims, ${fmt.int(r.first.rate)}/s)`));
    per("(c) claim p50 / p99, end window", (s) => cell(s, (r) => `${ms(r.last.p50Ms)} / ${ms(r.last.p99Ms)} ms (${fmt.int(r.last.count)} claims, ${fmt.int(r.last.rate)}/s)`));
    per("(c) claim p99 worst window; max", (s) => cell(s, (r) => `${ms(Math.max(...r.windows.map((w) => w.p99Ms)))} ms at ${fmt.int(r.windows.reduce((a, w) => (w.p99Ms > a.p99Ms ? w : a)).handled)} handled; ${ms(Math.max(...r.windows.map((w) => w.maxMs)))} ms`));
    per("(c) claim p99 over the run (≤ 10 steps)", (s) => cell(s, (r) => tenSteps(r).map((w) => ms(w.p99Ms)).join(" ")));
    per("(c) table + indexes: start → end → drained", (s) => cell(s, (r) => `${fmt.mb(r.first.size.totalBytes)} (${fmt.mb(r.first.size.indexBytes)}) → ${fmt.mb(r.last.size.totalBytes)} (${fmt.mb(r.last.size.indexBytes)}) → ${fmt.mb(r.drained.totalBytes)} (${fmt.mb(r.drained.indexBytes)})`));
    per("(c) table + indexes max over the run", (s) => cell(s, (r) => fmt.mb(Math.max(...r.windows.map((w) => w.size.totalBytes)))));
    per("(c) dead tuples start / end; autovacuums", (s) => cell(s, (r) => `${fmt.int(r.first.size.deadTuples)} / ${fmt.int(r.last.size.deadTuples)}; ${r.drained.autovacuums}`));
    per("(c) measured relation", (s) => cell(s, (r) => r.drained.relation));
  }
  const summary: string[][] = [];
  if (t.size > 1) {
    summary.push(["(a) enqueue (bulk): Tributary vs others", lead(new Map([...t].map(([s, r]) => [s, options.jobs / r.enqueueSeconds])), (v) => `${fmt.int(v)}/s`)]);
    summary.push(["(a) complete: Tributary vs others", lead(new Map([...t].map(([s, r]) => [s, options.jobs / r.completeSeconds])), (v) => `${fmt.int(v)}/s`)]);
    summary.push(["(a) end-to-end: Tributary vs others", lead(new Map([...t].map(([s, r]) => [s, options.jobs / (r.enqueueSeconds + r.completeSeconds)])), (v) => `${fmt.int(v)}/s`)]);
  }
  if (l.size > 1) summary.push(["(b) pickup p99: Tributary vs others", lead(new Map([...l].map(([s, r]) => [s, r.p99Ms])), (v) => `${ms(v)} ms`, true)]);
  return [...rows, ...summary.map(([label, text]) => [label!, text!, ...systems.slice(1).map(() => "")])];
}

/** The windows at 10%, 20%, … 100% of the run. */
function tenSteps(r: ChurnResult) {
  const steps = Math.min(10, r.windows.length);
  return Array.from({ length: steps }, (_, i) => r.windows[Math.max(0, Math.round(((i + 1) * r.windows.length) / steps) - 1)]!);
}

/** Runs `phase` for each system in turn; each result also goes to stderr at once (a later failure keeps it). */
async function runSystem<T>(results: Map<QueueSystemName, T>, all: QueueSystem[], phase: (s: QueueSystem) => Promise<T>, only?: (s: QueueSystem) => boolean) {
  for (const system of all) {
    if (only && !only(system)) continue;
    const result = await phase(system);
    results.set(system.name, result);
    progress(`${system.label}: ${JSON.stringify(result, (key, value: unknown) => (key === "windows" ? undefined : value))}`);
  }
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, { ...flags.settings, max_connections: "200", ...options.pgSettings });
const admin = postgres(cluster.url, { max: 2, onnotice: () => {} });
const launcher = await QueueWorkerLauncher.build(options.clientSource);
const opened: QueueSystem[] = [];
let exitCode = 0;
try {
  const pmPid = postmasterPid(cluster);
  const serverLine = await describeServer(admin);
  const makers: Record<QueueSystemName, () => Promise<QueueSystem>> = {
    tributary: () => tributarySystem(admin, (db) => cluster.urlFor(db), options.migrationsDir ? { migrationsDir: options.migrationsDir } : {}),
    pgboss: () => pgbossSystem(admin, (db) => cluster.urlFor(db)),
    graphile: () => graphileSystem(admin, (db) => cluster.urlFor(db)),
  };
  for (const name of systems) opened.push(await makers[name]());
  const results: Results = { throughput: new Map(), latency: new Map(), churn: new Map() };
  if (!options.skip.has("a")) {
    await runSystem(results.throughput, opened, (s) =>
      measureThroughput(s, launcher, pmPid, { jobs: options.jobs, enqueueBatch: options.enqueueBatch, enqueueConnections: options.enqueueConnections, settings, queue: "bench-throughput" }));
  }
  if (!options.skip.has("b")) {
    await runSystem(results.latency, opened, (s) =>
      measurePickupLatency(s, launcher, { rate: options.latencyRate, seconds: options.latencySeconds, settings, queue: "bench-latency" }));
  }
  if (!options.skip.has("c")) {
    await runSystem(results.churn, opened, (s) => {
      const messages = s.name === "tributary" ? options.churnMessages : options.churnOthers;
      progress(`${s.label} (c): ${fmt.int(messages)} messages`);
      return measureChurn(s, launcher, {
        messages, backlog: options.churnBacklog, enqueueBatch: options.enqueueBatch, enqueueConnections: Math.min(2, options.enqueueConnections),
        windowMs: options.churnWindowMs, settings, queue: "bench-churn",
      });
    }, (s) => s.name === "tributary" || options.churnOthers > 0);
  }
  const rows = tableRows(results);
  const note = (label: string, text: string) => rows.push([label, text, ...systems.slice(1).map(() => "")]);
  rows.push(["enqueue API (bulk; single)", ...systems.map((s) => ({
    tributary: "sendBatch(sql, queue, messages) (tributary.send_batch: one set-based statement per batch); send()",
    pgboss: "boss.insert(name, jobs); boss.send()",
    graphile: "workerUtils.addJobs(specs); workerUtils.addJob()",
  })[s])]);
  rows.push(["worker API and settings", ...systems.map((s) => ({
    tributary: `work(sql, q, h, { concurrency: ${settings.concurrency}${settings.tributaryBatch ? `, batch: ${settings.tributaryBatch}` : ""}${settings.tributaryPrefetch !== null ? `, prefetch: ${settings.tributaryPrefetch}` : ""} }), postgres.js pool 10${options.clientSource ? `; client from ${options.clientSource} (NOT the repository's)` : ""}`,
    pgboss: `boss.work(q, { localConcurrency: ${settings.concurrency}, batchSize: ${settings.pgbossBatch}, burstWhenBatchFull, pollingIntervalSeconds 0.5 }, h) (h gets an array), pool 10, useListenNotify`,
    graphile: `run({ concurrency: ${settings.concurrency}, taskList, preset.worker: { localQueue.size ${settings.graphileLocalQueue}, completeJobBatchDelay ${settings.graphileCompleteDelay} } }), pool 10`,
  })[s])]);
  rows.push(["queue options / schema", ...systems.map((s) => ({
    tributary: `create_queue defaults (visibility 30 s, max_deliveries 5), database bench_tributary${options.migrationsDir ? `; migrations from ${options.migrationsDir} (NOT the repository's)` : ""}`,
    pgboss: "createQueue { partition: true, notify: true, deleteAfterSeconds: 1 }; supervise every 10 s; database bench_pgboss",
    graphile: "task identifier per phase, no queue_name; database bench_graphile",
  })[s])]);
  rows.push(["version", ...systems.map((s) => (s === "tributary" ? "this repository" : s === "pgboss" ? `pg-boss ${packageVersion("pg-boss")}` : `graphile-worker ${packageVersion("graphile-worker")}`))]);
  note("payload", "~200-byte JSON (bench:relay's order data) + seq; no-op handler (bookkeeping only), workers in their own process (esbuild bundle)");
  note("(b) how", `single enqueues at ${options.latencyRate}/s for ${options.latencySeconds} s, one at a time on the driver's pool; latency = handler start − enqueue call returned (commit seen by the enqueuer), one clock; first second left out`);
  note("(c) how", `backlog ≤ ${fmt.int(options.churnBacklog)} jobs, ${Math.min(2, options.enqueueConnections)} producers × batches of ${fmt.int(options.enqueueBatch)}; claim = the worker's claim query wall time (Tributary: tributary.claim(); pg-boss: its fetch; graphile-worker: get_jobs), windows of ${options.churnWindowMs / 1000} s; start = 2nd window, end = last window with producers on`);
  note("server", `${serverLine}${Object.keys(options.pgSettings).length ? `, ${Object.entries(options.pgSettings).map(([k, v]) => `${k}=${v.slice(1, -1)}`).join(", ")}` : ""}; one server, one database per system; phases run one system at a time`);
  note("machine", `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}`);
  process.stdout.write(`\nQueue benchmark (${new Date().toISOString()})\n${formatTable(["figure", ...systems.map((s) => systemLabels[s])], rows, [0, 1, 2, 3])}\n`);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:queue failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n`);
} finally {
  for (const system of opened) await system.close().catch(() => undefined);
  launcher.dispose();
  await admin.end({ timeout: 5 });
  await cluster.destroy();
}
process.exit(exitCode);
