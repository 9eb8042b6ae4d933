/**
 * npm run bench:relay — how close the relay comes to the server's own
 * logical decoding speed, and the commit → stream lag under steady load.
 *
 *   1. migrate (slot 'tributary'), create slot 'bench_recv' with the same
 *      plugin (both see the same WAL), write N events (half single-event,
 *      half 100-event transactions) from several connections.
 *   2. (a) pg_recvlogical drains 'bench_recv' to the end LSN into /dev/null:
 *          the decode limit of this server;
 *      (b) the relay (own process) drains 'tributary' into tributary.events:
 *          timed from "active" until the stream holds N events;
 *      (a') pg_recvlogical drains 'bench_recv_after' (created with
 *          'bench_recv': the same WAL) again. The ratio is (b) against the
 *          mean of (a) and (a'): the machine's speed drifts within a run,
 *          and a reference taken on one side of (b) only moved with it.
 *   3. a fresh relay; a producer paces small transactions at a steady rate;
 *      lag = clock_timestamp() - committed_at when a LISTENing reader first
 *      sees the row (database clock only).
 *   4. metrics off against on (issue 14): the relay drains the same backlog
 *      again, alternating without and with its metrics served over HTTP and
 *      scraped every second, each run on its own slot (created before the
 *      backlog) into the target reset to empty; per round and medians.
 *   5. one table of figures and settings, then the metrics comparison.
 * --skip leaves phases out (drain: 2; lag: 3; metrics: 4).
 * --profile runs (b) under node --cpu-prof and summarizes where the relay's
 * CPU goes, and runs the metrics comparison's first round (both sides) under
 * it too, to show what metrics on adds to the relay's own CPU.
 *
 * A benchmark, not a test: it asserts only what makes its figures meaningful
 * (every event arrived exactly once).
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { migrate } from "@tributary/migrate";
import { createStream } from "@tributary/client";
import { cliHeapLimit } from "@tributary/testkit";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { currentWalLsn, describeServer, postmasterPid, startBenchServer, walBytesBetween } from "./support/bench-server.ts";
import { writeBacklog } from "./support/bulk-writer.ts";
import { cpuBetween, cpuSnapshot, describeCpu, loadAverage } from "./support/cpu-accounting.ts";
import { formatMetricsProfiles, formatProfile, mainThreadProfile, summarizeCpuProfile } from "./support/cpu-profile-summary.ts";
import { BENCH_PARTITIONS, BENCH_STREAMS } from "./support/event-payload.ts";
import { measureLag } from "./support/lag-probe.ts";
import { drainWithRecvlogical, drainWithRelay, formatGcPauses, type Bench } from "./support/drain-phases.ts";
import { checkpointVersion } from "./support/relay-checkpoint.ts";
import { relayChildScript, startRelayProcess } from "./support/relay-process.ts";
import { alternateMetrics, formatMetricsComparison } from "./support/metrics-comparison.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { resetRelayTarget } from "./support/relay-target-reset.ts";
import { streamedEvents } from "./support/stream-progress.ts";

const usage = `npm run bench:relay -- [flags]
${serverUsage}
  --events N                    events in the backlog (default 200000)
  --writers N                   concurrent writer connections (default 8)
  --batch-events N              relay MAX_BATCH_EVENTS (default 5000, the relay's default)
  --lag-rate N                  events/s of the lag phase (default 5000)
  --lag-seconds N               duration of the lag phase (default 15)
  --lag-tx-events N             events per producer transaction in the lag phase (default 1)
  --relay-node-args=…           extra node flags for the relay process (e.g. --relay-node-args=--max-old-space-size=128)
  --metrics-rounds N            rounds of metrics off / on of phase 4 (default 9, or TRIBUTARY_BENCH_METRICS_ROUNDS)
  --skip drain,lag,metrics      phases to leave out (drain: (a), (b), (a'); lag; metrics: the off / on comparison)
  --profile                     run (b) and the metrics comparison's round 1 under node --cpu-prof and summarize the profiles`;

const RELAY_SLOT = "tributary";
const RECV_SLOT = "bench_recv";
const RECV_AFTER_SLOT = "bench_recv_after";
const LAG_STREAM = "lag";
/** One slot per run of the metrics comparison (run 2r - 1 off, 2r on). */
const metricsSlot = (run: number) => `bench_metrics_${run}`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    events: { type: "string", default: "200000" },
    writers: { type: "string", default: "8" },
    "batch-events": { type: "string", default: "5000" },
    "lag-rate": { type: "string", default: "5000" },
    "lag-seconds": { type: "string", default: "15" },
    "lag-tx-events": { type: "string", default: "1" },
    "relay-node-args": { type: "string", default: cliHeapLimit },
    "metrics-rounds": { type: "string", default: process.env.TRIBUTARY_BENCH_METRICS_ROUNDS ?? "9" },
    skip: { type: "string", default: "" },
    profile: { type: "boolean", default: false },
  },
  usage,
);
const options = {
  events: positiveInt(values.events, "events"),
  writers: positiveInt(values.writers, "writers"),
  batchEvents: positiveInt(values["batch-events"], "batch-events"),
  lagRate: positiveInt(values["lag-rate"], "lag-rate"),
  lagSeconds: positiveInt(values["lag-seconds"], "lag-seconds"),
  lagTxEvents: positiveInt(values["lag-tx-events"], "lag-tx-events"),
  relayNodeArgs: String(values["relay-node-args"] ?? "").split(/\s+/).filter(Boolean),
  metricsRounds: positiveInt(values["metrics-rounds"], "metrics-rounds"),
  skip: new Set(String(values.skip).split(",").filter(Boolean)),
  profileDir: values.profile === true ? mkdtempSync(join(tmpdir(), "tributary-relay-prof-")) : null,
};

for (const phase of options.skip) if (!["drain", "lag", "metrics"].includes(phase)) throw new Error(`--skip takes drain, lag and metrics, not ${phase}`);
// The lag phase's relay goes on from where (b) left the slot: without (b) it would relay the backlog first.
if (options.skip.has("drain") && !options.skip.has("lag")) throw new Error("--skip drain needs --skip lag too: the lag phase starts where (b) left the relay's slot");

const perEvent = (seconds: number) => ((seconds * 1e6) / options.events).toFixed(1);

/** 1. The backlog, and the WAL it made. */
async function writePhase({ cluster, sql, pmPid }: Bench) {
  progress(`writing ${fmt.int(options.events)} events with ${options.writers} connections`);
  const startLsn = await currentWalLsn(sql);
  const before = cpuSnapshot(pmPid);
  const written = await writeBacklog(cluster.url, options.events, options.writers, (n) => progress(`  written ${fmt.int(n)}`));
  const cpu = cpuBetween(before, cpuSnapshot(pmPid));
  const endLsn = await currentWalLsn(sql);
  const walBytes = await walBytesBetween(sql, startLsn, endLsn);
  progress(`backlog written in ${written.seconds.toFixed(1)} s; WAL ${fmt.mb(walBytes)} up to ${endLsn}`);
  return {
    endLsn,
    walBytes,
    rows: [
      ["backlog written", `${fmt.int(written.events)} events, ${fmt.int(written.transactions)} tx (50% 1-event, 50% 100-event), ${options.writers} conns, ${written.seconds.toFixed(1)} s = ${fmt.int(written.events / written.seconds)} ev/s`],
      ["WAL to decode", `${fmt.mb(walBytes)} (${fmt.int(walBytes / options.events)} B/event), ${startLsn} → ${endLsn}`],
    ],
    cpuRow: ["CPU during write", describeCpu(cpu)],
  };
}

/** 2a (and 2a'). The decode limit: pg_recvlogical into /dev/null. */
async function decodeLimitPhase(bench: Bench, slot: string, label: string, endLsn: string, walBytes: number) {
  progress(`${label} pg_recvlogical draining the backlog`);
  const { seconds, walsenderCpu, clientCpu, cpu } = await drainWithRecvlogical(bench, slot, flags.decoder, endLsn);
  const rate = options.events / seconds;
  progress(`${label} ${seconds.toFixed(2)} s = ${fmt.int(rate)} events/s`);
  return {
    rate,
    cpuPerEvent: walsenderCpu + clientCpu,
    headline: [`${label} pg_recvlogical → /dev/null`, `${fmt.int(rate)} ev/s (${seconds.toFixed(2)} s, ${(walBytes / (1 << 20) / seconds).toFixed(1)} MB/s of WAL)`],
    cpuRow: [`CPU during ${label}`, `${describeCpu(cpu)}; walsender ${walsenderCpu.toFixed(2)} s, pg_recvlogical ${clientCpu.toFixed(2)} s`],
  };
}

/** 2b. The relay, in its own process, drains the same WAL into tributary.events. */
async function relayDrainPhase(bench: Bench) {
  progress(`(b) relay draining the backlog${options.profileDir ? " (under --cpu-prof)" : ""}`);
  const drain = await drainWithRelay(bench, {
    slotName: RELAY_SLOT, events: options.events, batchEvents: options.batchEvents, nodeArgs: options.relayNodeArgs,
    cpuProfileDir: options.profileDir, onProgress: (n) => progress(`  streamed ${fmt.int(n)}`),
  });
  const [stored] = await bench.sql<{ n: string }[]>`select count(*)::text as n from tributary.events`;
  if (Number(stored!.n) !== options.events) throw new Error(`tributary.events holds ${stored!.n} rows, expected exactly ${options.events}`);
  const rate = options.events / drain.seconds;
  progress(`(b) ${drain.seconds.toFixed(2)} s = ${fmt.int(rate)} events/s`);
  return {
    rate,
    cpuPerEvent: drain.walsenderCpu + drain.backendsCpu + drain.relayProcessCpu,
    headline: [`(b) relay → tributary.events${options.profileDir ? " [profiled]" : ""}`, `${fmt.int(rate)} ev/s (${drain.seconds.toFixed(2)} s from active; ${drain.secondsFromSpawn.toFixed(2)} s from spawn)`],
    details: [
      ["CPU µs/event of (b)", `walsender ${perEvent(drain.walsenderCpu)} + relay's writes ${perEvent(drain.backendsCpu)} + relay process ${perEvent(drain.relayProcessCpu)}`],
      ["relay batches during (b)", `${fmt.int(drain.batches)} (${fmt.int(options.events / Math.max(1, drain.batches))} events/batch)`],
      ["relay peak RSS during (b)", fmt.mb(drain.peakRss)],
      ["relay GC pauses during (b)", formatGcPauses(drain)],
    ],
    cpuRow: ["CPU during (b)", `${describeCpu(drain.cpu)}; walsender ${drain.walsenderCpu.toFixed(2)} s, relay's backends ${drain.backendsCpu.toFixed(2)} s, relay process ${drain.relayProcessCpu.toFixed(2)} s`],
  };
}

/** 3. Commit → stream lag at a steady rate, with a fresh (never profiled) relay. */
/** `streamedBefore`: events the stream holds when it starts (the backlog, once (b) relayed it). */
async function lagPhase({ cluster, sql, pmPid }: Bench, streamedBefore: number) {
  progress(`lag: ${fmt.int(options.lagRate)} events/s for ${options.lagSeconds} s`);
  const relay = startRelayProcess({ databaseUrl: cluster.url, slotName: RELAY_SLOT, maxBatchEvents: options.batchEvents, nodeArgs: options.relayNodeArgs });
  await relay.active;
  const batchesBefore = await checkpointVersion(sql, RELAY_SLOT);
  const before = cpuSnapshot(pmPid);
  const lag = await measureLag({
    url: cluster.url,
    stream: LAG_STREAM,
    rate: options.lagRate,
    seconds: options.lagSeconds,
    warmupSeconds: 1,
    producerConnections: 8,
    eventsPerTransaction: options.lagTxEvents,
  });
  const cpu = cpuBetween(before, cpuSnapshot(pmPid));
  progress(`lag per second of commit time (events/max ms): ${lag.perSecond}`);
  const batches = (await checkpointVersion(sql, RELAY_SLOT)) - batchesBefore;
  const peakRss = relay.peakRss();
  await relay.stop();
  const total = await streamedEvents(sql);
  if (total !== streamedBefore + lag.appended) throw new Error(`stream holds ${total} events, expected ${streamedBefore + lag.appended}`);
  return [
    [`lag @ ${fmt.int(options.lagRate)} ev/s target`, `achieved ${fmt.int(lag.achievedRate)} ev/s of ${options.lagTxEvents}-event tx for ${options.lagSeconds} s (${fmt.int(lag.samples)} samples after 1 s warm-up; max ${lag.maxInFlight} tx in flight)`],
    ["lag commit → row visible p50 / p99 / max", `${lag.p50Ms.toFixed(1)} / ${lag.p99Ms.toFixed(1)} / ${lag.maxMs.toFixed(1)} ms`],
    ["relay peak RSS during lag", fmt.mb(peakRss)],
    ["relay batches during lag", `${fmt.int(batches)} (${(lag.produced / Math.max(1, batches)).toFixed(1)} events/batch)`],
    ["CPU during lag", describeCpu(cpu)],
  ];
}

/**
 * 4. Metrics off against on, side by side: the same backlog drained again
 * and again, each run on its own slot into the reset target. Runs last, so
 * the phases before it see the target as they always did.
 */
async function metricsPhase(bench: Bench): Promise<string> {
  // All functions: the metrics code's are far from the top.
  const profileOptions = { bundle: relayChildScript(), builtinsToCaller: true, topFunctions: Number.MAX_SAFE_INTEGER };
  const profiles = options.profileDir ? { off: join(options.profileDir, "metrics-off"), on: join(options.profileDir, "metrics-on") } : null;
  const rounds = await alternateMetrics(options.metricsRounds, async (metricsOn, round) => {
    const slot = metricsSlot(2 * round - (metricsOn ? 0 : 1));
    await resetRelayTarget(bench.sql, slot);
    // Every run starts from a checkpoint: none falls due inside one run rather than another.
    await bench.sql`checkpoint`;
    const profileDir = profiles && round === 1 ? profiles[metricsOn ? "on" : "off"] : null;
    if (profileDir) mkdirSync(profileDir);
    const drain = await drainWithRelay(bench, {
      slotName: slot, events: options.events, batchEvents: options.batchEvents, nodeArgs: options.relayNodeArgs,
      metrics: metricsOn, cpuProfileDir: profileDir, onProgress: (n) => progress(`  streamed ${fmt.int(n)}`),
    });
    const streamed = await streamedEvents(bench.sql);
    if (streamed < options.events) throw new Error(`the stream holds ${streamed} events, expected at least ${options.events}`);
    return {
      rate: options.events / drain.seconds,
      cpuUsPerEvent: ((drain.walsenderCpu + drain.backendsCpu + drain.relayProcessCpu) * 1e6) / options.events,
      scrapes: drain.scrapes,
    };
  });
  return formatMetricsComparison(`Relay metrics off / on (${new Date().toISOString()})`, rounds, [
    `each run: a relay process drains the same ${fmt.int(options.events)}-event backlog (its own slot, created before the backlog; the target reset to empty), timed from "active" to the last event, as (b)`,
    "on: the relay's metrics (startRelay's metrics option) on a registry with the process's default metrics, as tributary relay --metrics-port, served over HTTP and scraped every second",
    "CPU µs/event: walsender + relay's backends + relay process",
    "each run starts from a CHECKPOINT",
    ...(profiles ? ["round 1 ran both sides under node --cpu-prof (see the profile below)"] : []),
  ]) + (profiles ? formatMetricsProfiles(summarizeCpuProfile(mainThreadProfile(profiles.off), profileOptions), summarizeCpuProfile(mainThreadProfile(profiles.on), profileOptions), options.profileDir!) : "");
}

async function run(bench: Bench, loadBefore: string): Promise<void> {
  const serverLine = await describeServer(bench.sql);
  await migrate(bench.sql, { slotName: RELAY_SLOT, decoder: flags.decoder });
  for (const slot of [RECV_SLOT, RECV_AFTER_SLOT]) await bench.sql`select pg_create_logical_replication_slot(${slot}, ${flags.decoder})`;
  for (const stream of [...BENCH_STREAMS, LAG_STREAM]) await createStream(bench.sql, stream, BENCH_PARTITIONS);

  const metricsSlots = options.skip.has("metrics") ? [] : Array.from({ length: 2 * options.metricsRounds }, (_, i) => metricsSlot(i + 1));
  for (const slot of metricsSlots) await bench.sql`select pg_create_logical_replication_slot(${slot}, ${flags.decoder})`;

  const write = await writePhase(bench);
  const rows = [["server / decoder", `${serverLine} / ${flags.decoder}`], ...write.rows];
  const cpuRows = [write.cpuRow];
  if (!options.skip.has("drain")) {
    const before = await decodeLimitPhase(bench, RECV_SLOT, "(a)", write.endLsn, write.walBytes);
    const relay = await relayDrainPhase(bench);
    const after = await decodeLimitPhase(bench, RECV_AFTER_SLOT, "(a')", write.endLsn, write.walBytes);
    const decodeLimit = { rate: (before.rate + after.rate) / 2, cpuPerEvent: (before.cpuPerEvent + after.cpuPerEvent) / 2 };
    rows.push(
      before.headline,
      relay.headline,
      after.headline,
      ["ratio relay / pg_recvlogical", `${(relay.rate / decodeLimit.rate).toFixed(2)} (wall clock, against the mean of (a) and (a'); ${(relay.rate / before.rate).toFixed(2)} against (a) alone)`],
      ["CPU µs/event (a, a' mean) / (b)", `${perEvent(decodeLimit.cpuPerEvent)} / ${perEvent(relay.cpuPerEvent)}: cost ratio ${(decodeLimit.cpuPerEvent / relay.cpuPerEvent).toFixed(2)} (CPU time: far less load-dependent than wall clock)`],
      ...relay.details,
    );
    cpuRows.push(before.cpuRow, relay.cpuRow, after.cpuRow);
  }
  rows.push(...cpuRows);
  if (!options.skip.has("lag")) rows.push(...(await lagPhase(bench, options.skip.has("drain") ? 0 : options.events)));
  const metricsReport = options.skip.has("metrics") ? "" : await metricsPhase(bench);
  rows.push(
    ["relay settings", `MAX_BATCH_EVENTS=${options.batchEvents}, maxBatchBytes=8 MB (default), relay child bundled by esbuild${options.relayNodeArgs.length ? `, node ${options.relayNodeArgs.join(" ")}` : ""}`],
    ["machine", `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}`],
  );
  process.stdout.write(`\nRelay benchmark (${new Date().toISOString()})\n${formatTable(["figure", "value"], rows, [0, 1])}\n${metricsReport}`);
  if (options.profileDir && !options.skip.has("drain")) {
    process.stdout.write(formatProfile("Relay CPU profile during (b)", summarizeCpuProfile(mainThreadProfile(options.profileDir), { bundle: relayChildScript() }), options.profileDir));
  }
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
// Slots: the relay's, the two pg_recvlogical ones and two per metrics round (the server's default is 20 here).
const slotsNeeded = 3 + (options.skip.has("metrics") ? 0 : 2 * options.metricsRounds);
const cluster = await startBenchServer(flags.server, { max_replication_slots: String(Math.max(20, slotsNeeded)), ...flags.settings });
const sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
let exitCode = 0;
try {
  await run({ cluster, sql, pmPid: postmasterPid(cluster) }, loadBefore);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:relay failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n`);
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
process.exit(exitCode);
