/**
 * npm run bench:consumer — what a consumer group member sustains, how soon it
 * sees a commit, and how fast a dead member's partitions move.
 *
 *   1. migrate; write N events with bench:relay's writer and layout (4
 *      streams × 8 partitions); a relay (own process) relays them all, then
 *      stops; VACUUM ANALYZE tributary.events (no autovacuum mid-run).
 *   2. (a) one member (own process, esbuild bundle) subscribed to the 4
 *      streams catches up on the backlog with a no-op handler: events/s from
 *      the consumer() call until the handler saw every event (dense offsets
 *      checked in the child), its CPU, peak RSS and query times. `--also`
 *      repeats (a) with other batchSize × concurrency values, each as a new
 *      group on the same backlog. `--segments N` (default 100) then copies the
 *      backlog into N storage segments per stream (segmented-copy.ts) and
 *      runs (a) on the copy and on the original in turns: their ratio is what
 *      the number of retained segments costs a catch-up.
 *   3. (b) a relay and one member on a fresh stream; 1-event transactions at
 *      a steady rate; latency = the handler's Date.now() − event.committedAt.
 *   4. (c) two members share a stream; one is killed with SIGKILL right after
 *      a heartbeat; time until the survivor handles each of its partitions.
 *   5. metrics off against on (issue 14): one member catches up on the
 *      backlog of (a) again and again, a new group each run, alternating
 *      without and with its metrics served over HTTP and scraped every
 *      second; per round and medians (--skip metrics leaves it out).
 *   6. one table of figures and settings, then the metrics comparison; --profile adds where (a)'s member
 *      spends its CPU (node --cpu-prof).
 *
 * A benchmark, not a test: it asserts only what makes its figures meaningful
 * (every event handled, nothing skipped).
 */
import { mkdtempSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres, { type Sql } from "postgres";
import { migrate } from "@tributary/migrate";
import { createStream } from "@tributary/client";
import { cliHeapLimit, type Cluster } from "@tributary/testkit";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, postmasterPid, startBenchServer } from "./support/bench-server.ts";
import { writeBacklog } from "./support/bulk-writer.ts";
import { catchUp, catchupRows, type CatchupResult } from "./support/consumer-catchup.ts";
import { measureFailover } from "./support/consumer-failover.ts";
import { measureHandlerLatency } from "./support/consumer-latency.ts";
import { MemberLauncher } from "./support/consumer-process.ts";
import type { ProfileSummary } from "./support/consumer-profile.ts";
import { describeCpu, loadAverage } from "./support/cpu-accounting.ts";
import { BENCH_PARTITIONS, BENCH_STREAMS } from "./support/event-payload.ts";
import { grantedRoleUrl } from "./support/bench-roles.ts";
import { startRelayProcess } from "./support/relay-process.ts";
import { copyIntoSegments, segmentedName } from "./support/segmented-copy.ts";
import { alternateMetrics, formatMetricsComparison } from "./support/metrics-comparison.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { streamedEvents, waitForStreamedEvents } from "./support/stream-progress.ts";
import { median } from "./support/median.ts";

const usage = `npm run bench:consumer -- [flags]
${serverUsage}
  --events N                    events in the backlog of (a) (default 1000000)
  --writers N                   concurrent writer connections for the backlog (default 8)
  --batch-size N                the member's batchSize (default 500, the consumer's default)
  --concurrency N               the member's concurrency (default 8, the consumer's default)
  --also BxC[:batch],…          more (a) runs with batchSize B and concurrency C, each a new group
                                on the same backlog; :batch uses the batchHandler option instead of
                                handler; :reader connects as a reader holding one read grant per
                                stream (migration 0007) instead of the superuser, so the per-stream
                                row-level security is measured (default 500x32,500x32:batch; --also '' for none)
  --lag-rate N                  events/s of (b) (default 5000)
  --lag-seconds N               duration of (b) (default 15)
  --session-timeout-ms N        session timeout of (c) (default 10000, the consumer's default)
  --failover-rate N             events/s appended during (c) (default 200)
  --segments N                  (a) again on a copy of the backlog split into N storage segments per
                                stream, alternating with the backlog in its one segment, to print their
                                ratio (default 100; 1 leaves it out)
  --segment-rounds N            rounds of that comparison (default 2)
  --metrics-rounds N            rounds of metrics off / on of phase 5 (default 5, or TRIBUTARY_BENCH_METRICS_ROUNDS)
  --skip a,b,c,metrics          phases to leave out (the backlog is written unless both a and metrics are left out)
  --client-src PATH             bundle the members against another copy of @tributary/client
                                (PATH = its src/index.ts), to measure a proposed change
  --profile                     run (a), and the first round of metrics off / on, under node --cpu-prof and
                                summarize where the member's CPU goes`;

const RELAY_SLOT = "tributary";
const LAG_STREAM = "lag";
const FAILOVER_STREAM = "failover";

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    events: { type: "string", default: "1000000" },
    writers: { type: "string", default: "8" },
    "batch-size": { type: "string", default: "500" },
    concurrency: { type: "string", default: "8" },
    also: { type: "string", default: "500x32,500x32:batch" },
    segments: { type: "string", default: "100" },
    "segment-rounds": { type: "string", default: "2" },
    "lag-rate": { type: "string", default: "5000" },
    "lag-seconds": { type: "string", default: "15" },
    "session-timeout-ms": { type: "string", default: "10000" },
    "failover-rate": { type: "string", default: "200" },
    "metrics-rounds": { type: "string", default: process.env.TRIBUTARY_BENCH_METRICS_ROUNDS ?? "5" },
    skip: { type: "string", default: "" },
    "client-src": { type: "string" },
    profile: { type: "boolean", default: false },
  },
  usage,
);
const options = {
  events: positiveInt(values.events, "events"),
  writers: positiveInt(values.writers, "writers"),
  batchSize: positiveInt(values["batch-size"], "batch-size"),
  concurrency: positiveInt(values.concurrency, "concurrency"),
  also: String(values.also).split(",").filter(Boolean).map(parseCombination),
  lagRate: positiveInt(values["lag-rate"], "lag-rate"),
  lagSeconds: positiveInt(values["lag-seconds"], "lag-seconds"),
  sessionTimeoutMs: positiveInt(values["session-timeout-ms"], "session-timeout-ms"),
  failoverRate: positiveInt(values["failover-rate"], "failover-rate"),
  segments: positiveInt(values.segments, "segments"),
  segmentRounds: positiveInt(values["segment-rounds"], "segment-rounds"),
  metricsRounds: positiveInt(values["metrics-rounds"], "metrics-rounds"),
  skip: new Set(String(values.skip).split(",").filter(Boolean)),
  clientSource: typeof values["client-src"] === "string" ? resolve(values["client-src"]) : undefined,
  profileDir: values.profile === true ? mkdtempSync(join(tmpdir(), "tributary-consumer-prof-")) : null,
};

for (const phase of options.skip) if (!["a", "b", "c", "metrics"].includes(phase)) throw new Error(`--skip takes a, b, c and metrics, not ${phase}`);

function parseCombination(text: string): { batchSize: number; concurrency: number; handler: "each" | "batch"; asReader: boolean } {
  const match = /^(\d+)x(\d+)(:batch)?(:reader)?$/.exec(text.trim());
  if (!match) throw new Error(`--also takes batchSize x concurrency pairs like 2000x32, 2000x32:batch or 2000x32:reader, not ${text}`);
  return {
    batchSize: positiveInt(match[1], "also batchSize"), concurrency: positiveInt(match[2], "also concurrency"),
    handler: match[3] ? "batch" : "each", asReader: match[4] !== undefined,
  };
}

interface Bench {
  readonly cluster: Cluster;
  readonly sql: Sql;
  readonly pmPid: number;
  readonly launcher: MemberLauncher;
  /** A granted reader's URL (bench-roles.ts); null before migration 0007. */
  readerUrl: string | null;
}

/** 1. The backlog, relayed into tributary.events before (a) starts. */
async function backlogPhase({ cluster, sql }: Bench): Promise<string[][]> {
  progress(`writing ${fmt.int(options.events)} events with ${options.writers} connections`);
  const written = await writeBacklog(cluster.url, options.events, options.writers, (n) => progress(`  written ${fmt.int(n)}`));
  progress("relaying the backlog");
  const relay = startRelayProcess({ databaseUrl: cluster.url, slotName: RELAY_SLOT });
  const activeAt = await relay.active;
  const doneAt = await waitForStreamedEvents(sql, options.events, 600_000, (n) => progress(`  relayed ${fmt.int(n)}`));
  const exit = await relay.stop();
  if (exit !== 0) throw new Error(`relay exited with ${exit}: ${relay.stderr()}`);
  if ((await streamedEvents(sql)) !== options.events) throw new Error(`the stream holds ${await streamedEvents(sql)} events, expected ${options.events}`);
  progress("vacuum analyze tributary.events");
  const vacuumStarted = performance.now();
  await sql`vacuum analyze tributary.events`;
  const vacuumSeconds = (performance.now() - vacuumStarted) / 1000;
  return [
    ["backlog", `${fmt.int(written.events)} events (bench:relay's writer: 50% 1-event, 50% 100-event tx, ~200-byte JSON + traceparent header) over ${BENCH_STREAMS.length} streams × ${BENCH_PARTITIONS} partitions (${BENCH_STREAMS.join(", ")}) = ${BENCH_STREAMS.length * BENCH_PARTITIONS} partitions`],
    ["backlog preparation", `written in ${written.seconds.toFixed(1)} s, relayed in ${((doneAt - activeAt) / 1000).toFixed(1)} s (relay stopped before (a)), vacuum analyze ${vacuumSeconds.toFixed(1)} s`],
  ];
}

async function catchupPhase(bench: Bench): Promise<{ rows: string[][]; profiles: Array<[string, ProfileSummary]> }> {
  const runs = [{ batchSize: options.batchSize, concurrency: options.concurrency, handler: "each" as const, asReader: false }, ...options.also];
  const results: CatchupResult[] = [];
  for (const [i, run] of runs.entries()) {
    if (run.asReader && !bench.readerUrl) throw new Error("--also …:reader needs the privilege model (migration 0007) in this schema");
    results.push(await catchUp(bench.launcher, bench.sql, bench.pmPid, {
      url: run.asReader ? bench.readerUrl! : bench.cluster.url,
      asReader: run.asReader,
      streams: BENCH_STREAMS,
      events: options.events,
      batchSize: run.batchSize,
      concurrency: run.concurrency,
      handler: run.handler,
      group: `bench-catchup-${i + 1}`,
      ...(options.profileDir ? { profileDir: options.profileDir } : {}),
    }));
  }
  const rows = results.flatMap((r, i) => catchupRows(r, i === 0 ? "(a)" : `(a${i + 1})`));
  const first = results[0]!;
  if (options.segments > 1) rows.push(...(await segmentsComparison(bench, first)));
  rows.push([
    "(a) requirement ≥ 100,000 ev/s",
    results.map((r) => `${label(r)}: ${r.rate >= 100_000 ? "met" : "NOT met"} (${fmt.int(r.rate)})`).join("; ") +
      (first.done.duplicates ? `; ${first.done.duplicates} duplicate deliveries` : ""),
  ]);
  return { rows, profiles: results.filter((r) => r.profile).map((r) => [label(r), r.profile!]) };
}

/**
 * (a) with the backlog in many segments per stream against it in one, side
 * by side: rounds alternate, each a new group, the default member settings.
 */
async function segmentsComparison(bench: Bench, first: CatchupResult): Promise<string[][]> {
  progress(`copying the backlog into ${options.segments} segments per stream`);
  const copied = await copyIntoSegments(bench.sql, BENCH_STREAMS, BENCH_PARTITIONS, options.segments);
  const one = [first.rate];
  const many: number[] = [];
  const run = async (streams: readonly string[], group: string) =>
    (await catchUp(bench.launcher, bench.sql, bench.pmPid, {
      url: bench.cluster.url, streams, events: options.events, batchSize: options.batchSize, concurrency: options.concurrency, handler: "each", group,
    })).rate;
  for (let round = 1; round <= options.segmentRounds; round++) {
    many.push(await run(BENCH_STREAMS.map(segmentedName), `bench-segments-${round}`));
    one.push(await run(BENCH_STREAMS, `bench-one-segment-${round}`));
  }
  const ratio = median(many) / median(one);
  return [
    [`(a) ${options.segments} segments per stream`, `${many.map((r) => fmt.int(r)).join(" / ")} ev/s (copy of the backlog, ${copied.seconds.toFixed(1)} s to make)`],
    ["(a) one segment per stream", `${one.map((r) => fmt.int(r)).join(" / ")} ev/s (the first is (a) above)`],
    [`(a) ${options.segments} segments vs one (medians)`, `${ratio.toFixed(2)}× — requirement ≥ 0.90: ${ratio >= 0.9 ? "met" : "NOT met"}`],
  ];
}

const label = (r: CatchupResult) =>
  `${r.options.batchSize}×${r.options.concurrency}${r.options.handler === "batch" ? " batchHandler" : ""}${r.options.asReader ? " as granted reader" : ""}`;

async function latencyPhase(bench: Bench): Promise<string[][]> {
  const r = await measureHandlerLatency(bench.launcher, bench.sql, bench.pmPid, {
    url: bench.cluster.url,
    stream: LAG_STREAM,
    group: "bench-latency",
    rate: options.lagRate,
    seconds: options.lagSeconds,
    warmupSeconds: 1,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
  });
  return [
    [`(b) @ ${fmt.int(options.lagRate)} ev/s target`, `achieved ${fmt.int(r.achievedRate)} ev/s of 1-event tx for ${options.lagSeconds} s into '${LAG_STREAM}' (${BENCH_PARTITIONS} partitions) through a relay and 1 member (batchSize ${options.batchSize}, concurrency ${options.concurrency}); ${fmt.int(r.samples)} samples after 1 s warm-up; max ${r.maxInFlight} tx in flight`],
    ["(b) commit → handler p50 / p99 / max", `${r.p50Ms.toFixed(0)} / ${r.p99Ms.toFixed(0)} / ${r.maxMs.toFixed(0)} ms (handler's Date.now() − event.committedAt; one machine, one clock; 1 ms resolution) — target p99 < 25 ms: ${r.p99Ms < 25 ? "met" : "NOT met"}`],
    ...(r.relayShare && r.memberShare
      ? [["(b) split p50 / p99 / max", `commit → row readable (relay's batch committed) ${r.relayShare.map((v) => v.toFixed(1)).join(" / ")} ms; readable → handler (member) ${r.memberShare.map((v) => v.toFixed(1)).join(" / ")} ms — target p99 of commit → readable < 15 ms: ${r.relayShare[1] < 15 ? "met" : "NOT met"}`]]
      : []),
    ["(b) per second (events/max ms)", r.perSecond],
    ["(b) member peak RSS; CPU", `${fmt.mb(r.memberPeakRss)}; ${describeCpu(r.cpu)}${r.duplicates ? `; ${r.duplicates} duplicate deliveries` : ""}`],
  ];
}

async function failoverPhase(bench: Bench): Promise<string[][]> {
  const r = await measureFailover(bench.launcher, bench.sql, {
    url: bench.cluster.url,
    stream: FAILOVER_STREAM,
    group: "bench-failover",
    partitions: BENCH_PARTITIONS,
    sessionTimeoutMs: options.sessionTimeoutMs,
    rate: options.failoverRate,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
  });
  const bound = options.sessionTimeoutMs + 2_000;
  return [
    [`(c) failover, session timeout ${fmt.int(options.sessionTimeoutMs)} ms`, `${fmt.int(r.maxMs)} ms from kill -9 until the survivor handled an event in every partition the dead member owned — requirement ≤ ${fmt.int(bound)} ms: ${r.maxMs <= bound ? "met" : "NOT met"}`],
    ["(c) per partition (kill → first handled)", r.partitions.map((p) => `p${p.partition} ${fmt.int(p.ms)} ms from offset ${p.firstOffset} (${p.waiting} waiting)`).join("; ")],
    ["(c) how", `2 members (own processes), '${FAILOVER_STREAM}' (${BENCH_PARTITIONS} partitions), ${options.failoverRate} ev/s of 1-event tx throughout; killed ${r.heartbeatToKillMs} ms after its heartbeat (worst case); partitions reassigned ${fmt.int(r.reassignedMs)} ms after the kill (10 ms polling); survivor started at the dead member's last commit in every partition, ≥ ${r.redelivered} events handled twice; then reached every partition's end (${fmt.int(r.produced)} events appended)`],
  ];
}

/**
 * 5. Metrics off against on, side by side: the default member catches up on
 * the whole backlog, a new group each run, alternating without and with its
 * metrics (served, and scraped every second).
 */
async function metricsPhase(bench: Bench, profiles: Array<[string, ProfileSummary]>): Promise<string> {
  const rounds = await alternateMetrics(options.metricsRounds, async (metricsOn, round) => {
    const group = `bench-metrics-${metricsOn ? "on" : "off"}-${round}`;
    const r = await catchUp(bench.launcher, bench.sql, bench.pmPid, {
      url: bench.cluster.url, streams: BENCH_STREAMS, events: options.events, batchSize: options.batchSize, concurrency: options.concurrency,
      handler: "each", group, metrics: metricsOn,
      // --profile: the first round's two runs, where the metrics' cost would show.
      ...(options.profileDir && round === 1 ? { profileDir: options.profileDir } : {}),
    });
    if (r.profile) profiles.push([`metrics ${metricsOn ? "on" : "off"} (${group})`, r.profile]);
    return { rate: r.rate, cpuUsPerEvent: ((r.done.cpuSeconds + r.backendCpuSeconds) * 1e6) / options.events, scrapes: r.scrapes };
  });
  return formatMetricsComparison(`Consumer metrics off / on (${new Date().toISOString()})`, rounds, [
    `each run: one member (batchSize ${options.batchSize}, concurrency ${options.concurrency}, no-op handler) catches up on the ${fmt.int(options.events)}-event backlog of (a) as a new group, timed as (a)`,
    "on: the member's metrics (ConsumerOptions.metrics) on a registry with the process's default metrics, served over HTTP and scraped every second",
    "CPU µs/event: member process + its server backends",
  ]);
}

async function run(bench: Bench, loadBefore: string): Promise<void> {
  const serverLine = await describeServer(bench.sql);
  await migrate(bench.sql, { slotName: RELAY_SLOT, decoder: flags.decoder });
  for (const stream of [...BENCH_STREAMS, LAG_STREAM, FAILOVER_STREAM]) await createStream(bench.sql, stream, BENCH_PARTITIONS);
  bench.readerUrl = await grantedRoleUrl(bench.sql, bench.cluster.url, "bench_reader", BENCH_STREAMS);

  const rows: string[][] = [["server / decoder", `${serverLine} / ${flags.decoder}`]];
  let profiles: Array<[string, ProfileSummary]> = [];
  if (!options.skip.has("a") || !options.skip.has("metrics")) rows.push(...(await backlogPhase(bench)));
  if (!options.skip.has("a")) {
    const catchup = await catchupPhase(bench);
    rows.push(...catchup.rows);
    profiles = catchup.profiles;
  }
  if (!options.skip.has("b") || !options.skip.has("c")) {
    progress("starting a relay for (b) and (c)");
    const relay = startRelayProcess({ databaseUrl: bench.cluster.url, slotName: RELAY_SLOT });
    try {
      await relay.active;
      if (!options.skip.has("b")) rows.push(...(await latencyPhase(bench)));
      if (!options.skip.has("c")) rows.push(...(await failoverPhase(bench)));
    } finally {
      await relay.stop();
    }
  }
  const metricsReport = options.skip.has("metrics") ? "" : await metricsPhase(bench, profiles);
  rows.push(
    ["member settings", `${options.clientSource ? `@tributary/client from ${options.clientSource} (NOT the repository's), ` : ""}own process (esbuild bundle of bench/support/consumer-child.ts), postgres.js pool max 10, no-op per-event handler (the handler option) unless marked batchHandler, startFrom earliest; (c) session timeout as shown, else 10,000 ms`],
    ["server settings", "as in the first row, plus track_commit_timestamp=on (dates each relay batch: the split of (b))"],
    ["relay settings", `relay child bundled by esbuild, MAX_BATCH_EVENTS=5000 (default), node ${cliHeapLimit}`],
    ["machine", `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}`],
  );
  process.stdout.write(`\nConsumer benchmark (${new Date().toISOString()})\n${formatTable(["figure", "value"], rows, [0, 1])}\n${metricsReport}`);
  for (const [label, summary] of profiles) printProfile(label, summary);
  if (options.profileDir) process.stdout.write(`(profiles kept in ${options.profileDir})\n`);
}

function printProfile(label: string, summary: ProfileSummary): void {
  process.stdout.write(`\nMember CPU profile during (a) ${label}: ${(summary.windowMs / 1000).toFixed(2)} s catch-up window, self time\n`);
  process.stdout.write(formatTable(["category", "ms", "share"], summary.categories.map((c) => [c.category, fmt.int(c.ms), fmt.pct(c.share)])) + "\n\n");
  process.stdout.write(formatTable(["function", "where", "ms", "share"], summary.functions.map((f) => [f.fn, f.where, fmt.int(f.ms), fmt.pct(f.share)]), [0, 1]) + "\n");
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
// track_commit_timestamp: when each relay batch committed, to split (b) into the relay's and the member's share.
const cluster = await startBenchServer(flags.server, { ...flags.settings, track_commit_timestamp: "on" });
const sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
const launcher = await MemberLauncher.build(options.clientSource);
let exitCode = 0;
try {
  await run({ cluster, sql, pmPid: postmasterPid(cluster), launcher, readerUrl: null }, loadBefore);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:consumer failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n`);
} finally {
  launcher.dispose();
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
process.exit(exitCode);
