/**
 * npm run bench:bridge — how close the Kafka bridge comes to a bare kafkajs
 * producer sending the same records to the same broker, and how soon a
 * commit reaches a Kafka reader.
 *
 *   1. one PostgreSQL (testkit) and one Kafka broker (testkit: Kafka 3.9,
 *      KRaft, single node); migrate; write N events with bench:relay's writer
 *      and layout (4 streams × 8 partitions); a relay relays them all and
 *      stops; VACUUM ANALYZE. The events are read back and turned into the
 *      bridge's records (toKafkaRecord), untimed; one untimed pass of them
 *      warms the broker's JVM up for both sides.
 *   2. rounds (other work on the machine moves single runs a lot) of:
 *      (a) one bridge (own process, esbuild bundle) forwards the backlog to
 *      4 fresh topics of 8 partitions: events/s from the startBridge() call
 *      until the topics' end offsets hold every event; its CPU, peak RSS and
 *      where its wall time went (fetch, send, commit, Produce requests);
 *      (a′) the same for each --compare-src copy of the bridge;
 *      (b) a bare kafkajs idempotent producer sends the same records to
 *      fresh topics in each of several ways (bridge-bare-producer.ts); the
 *      round's fastest is its ceiling: ratio = (a) / (b), median of rounds.
 *   3. (c) a relay and a bridge on a fresh stream; 1-event transactions at a
 *      steady rate; latency = a kafkajs reader's Date.now() − the record's
 *      tributary-committed-at header. (c′) for each --compare-src copy.
 *   4. one table; --profile adds where round 1's bridge spends its CPU.
 *
 * A benchmark, not a test: it asserts only what makes its figures meaningful
 * (every event in Kafka exactly once, in order; every offset committed).
 */
import { mkdtempSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres, { type Sql } from "postgres";
import type { Admin } from "kafkajs";
import { migrate } from "@tributary/migrate";
import { createStream } from "@tributary/client";
import { DEFAULT_BRIDGE_PRODUCERS } from "@tributary/kafka-bridge";
import { cliHeapLimit, KafkaBroker, kafkaVersion, type Cluster } from "@tributary/testkit";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, postmasterPid, startBenchServer } from "./support/bench-server.ts";
import { BARE_MODES, bareProducerRun, readRecords, type BareMode, type BareResult, type PartitionRecords } from "./support/bridge-bare-producer.ts";
import { bridgeCatchUp, type BridgeCatchupResult } from "./support/bridge-catchup.ts";
import { measureBridgeLatency } from "./support/bridge-latency.ts";
import { BridgeLauncher } from "./support/bridge-process.ts";
import type { ProfileSummary } from "./support/bridge-profile.ts";
import { comparisonRows, latencyRows, printProfile, type ReportSettings, type Round } from "./support/bridge-report.ts";
import { kafkaAdmin } from "./support/bridge-topics.ts";
import { writeBacklog } from "./support/bulk-writer.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { BENCH_PARTITIONS, BENCH_STREAMS } from "./support/event-payload.ts";
import { startRelayProcess } from "./support/relay-process.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { streamedEvents, waitForStreamedEvents } from "./support/stream-progress.ts";

const usage = `npm run bench:bridge -- [flags]
${serverUsage}
  --events N                    events in the backlog of (a) and (b) (default 200000)
  --writers N                   concurrent writer connections for the backlog (default 8)
  --batch-size N                the bridge's batchSize, and (b)'s records per partition batch (default 500, the bridge's default)
  --concurrency N               the bridge's concurrency, and (b)'s sends in flight (default 8, the bridge's default)
  --producers N                 the bridge's producers, and those of (b)'s \`producers\` way (default ${DEFAULT_BRIDGE_PRODUCERS}, the bridge's default)
  --bare MODE,…                 how (b) sends, each timed on fresh topics; the fastest is the ceiling
                                (default ${BARE_MODES.join(",")})
  --rounds N                    rounds of (a) then (b), each on fresh topics; the ratio is the median round's
                                (default 3: other work on the machine moves single runs a lot)
  --lag-rate N                  events/s of (c) (default 5000)
  --lag-seconds N               duration of (c) (default 15)
  --skip a,b,c                  phases to leave out
  --bridge-src PATH             bundle the bridge against another copy of @tributary/kafka-bridge
                                (PATH = its src/index.ts), to measure a proposed change
  --client-src PATH             likewise for @tributary/client
  --compare-src 'SPEC,…'        more bridges run as (a′) in every round next to (a) (after it in odd rounds,
                                before it in even ones) and as (c′): a proposed change side by side. SPEC = the
                                src/index.ts of another copy of @tributary/kafka-bridge, or . for (a)'s own,
                                optionally followed by extra node flags: '. --max-semi-space-size=32', or by
                                producers=N for that bridge's producers: '. producers=1'
  --bridge-node-args=…          node flags of the bridge process (default --max-old-space-size=128, as
                                \`tributary bridge\` runs: apps/cli/bin/tributary.js)
  --profile                     run round 1's (a) (and (a′)) under node --cpu-prof and summarize where the bridge's CPU goes`;

const RELAY_SLOT = "tributary";
const LAG_STREAM = "lag";

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    events: { type: "string", default: "200000" },
    writers: { type: "string", default: "8" },
    "batch-size": { type: "string", default: "500" },
    concurrency: { type: "string", default: "8" },
    producers: { type: "string", default: String(DEFAULT_BRIDGE_PRODUCERS) },
    bare: { type: "string", default: BARE_MODES.join(",") },
    rounds: { type: "string", default: "3" },
    "lag-rate": { type: "string", default: "5000" },
    "lag-seconds": { type: "string", default: "15" },
    skip: { type: "string", default: "" },
    "bridge-src": { type: "string" },
    "client-src": { type: "string" },
    "compare-src": { type: "string", default: "" },
    "bridge-node-args": { type: "string", default: cliHeapLimit },
    profile: { type: "boolean", default: false },
  },
  usage,
);
const options = {
  events: positiveInt(values.events, "events"),
  writers: positiveInt(values.writers, "writers"),
  batchSize: positiveInt(values["batch-size"], "batch-size"),
  concurrency: positiveInt(values.concurrency, "concurrency"),
  producers: positiveInt(values.producers, "producers"),
  bare: String(values.bare).split(",").filter(Boolean).map(parseMode),
  rounds: positiveInt(values.rounds, "rounds"),
  lagRate: positiveInt(values["lag-rate"], "lag-rate"),
  lagSeconds: positiveInt(values["lag-seconds"], "lag-seconds"),
  skip: new Set(String(values.skip).split(",").filter(Boolean)),
  bridgeSource: typeof values["bridge-src"] === "string" ? resolve(values["bridge-src"]) : undefined,
  clientSource: typeof values["client-src"] === "string" ? resolve(values["client-src"]) : undefined,
  compare: String(values["compare-src"]).split(",").filter((spec) => spec.trim()).map(parseCompare),
  bridgeNodeArgs: String(values["bridge-node-args"] ?? "").split(/\s+/).filter(Boolean),
  profileDir: values.profile === true ? mkdtempSync(join(tmpdir(), "tributary-bridge-prof-")) : null,
};

const reportSettings: ReportSettings = {
  events: options.events,
  batchSize: options.batchSize,
  concurrency: options.concurrency,
  producers: options.producers,
  partitions: BENCH_PARTITIONS,
  bare: options.bare,
  compareSources: options.compare.map((c) => c.label),
  profiled: options.profileDir !== null,
  lagRate: options.lagRate,
  lagSeconds: options.lagSeconds,
};

/** "PATH [producers=N] [node flags…]" or ". […]" (the bridge of (a)). */
function parseCompare(spec: string): { source: string | null; nodeArgs: string[]; producers: number | null; label: string } {
  const [path, ...rest] = spec.trim().split(/\s+/);
  const source = path === "." ? null : resolve(path!);
  const producersArg = rest.find((t) => t.startsWith("producers="));
  const producers = producersArg ? positiveInt(producersArg.slice("producers=".length), "compare-src producers") : null;
  const flags = rest.filter((t) => t !== producersArg);
  const label = `${source ? `bridge from ${source}` : "(a)'s bridge"}${producers ? ` with ${producers} producer${producers === 1 ? "" : "s"}` : ""}${flags.length ? ` with node ${flags.join(" ")}` : ""}`;
  return { source, nodeArgs: flags, producers, label };
}

function parseMode(text: string): BareMode {
  const mode = text.trim() as BareMode;
  if (!BARE_MODES.includes(mode)) throw new Error(`--bare takes ${BARE_MODES.join(", ")}, not ${text}`);
  return mode;
}

interface Bench {
  readonly cluster: Cluster;
  readonly sql: Sql;
  readonly pmPid: number;
  readonly broker: KafkaBroker;
  readonly admin: Admin;
  readonly launcher: BridgeLauncher;
  /** One per --compare-src. */
  readonly compared: ReadonlyArray<{ readonly launcher: BridgeLauncher; readonly nodeArgs: readonly string[]; readonly producers: number }>;
}

const sources = () =>
  [options.bridgeSource && `@tributary/kafka-bridge from ${options.bridgeSource}`, options.clientSource && `@tributary/client from ${options.clientSource}`]
    .filter(Boolean)
    .join(", ");

/** 1. The backlog, relayed into tributary.events; its records; a warm broker. */
async function backlogPhase({ cluster, sql, broker, pmPid }: Bench): Promise<{ rows: string[][]; records: PartitionRecords[] }> {
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
  await sql`vacuum analyze tributary.events`;
  progress("reading the events back as the bridge's records (untimed)");
  const readStarted = performance.now();
  const records = await readRecords(cluster.url, BENCH_STREAMS, BENCH_PARTITIONS);
  const readSeconds = (performance.now() - readStarted) / 1000;
  const bytes = records.reduce((sum, p) => sum + p.records.reduce((s, r) => s + recordBytes(r), 0), 0);
  // The broker's JVM compiles its produce path on first use: one untimed pass, so (a) and (b) both meet a warm broker.
  progress("warming the broker up: one untimed pass of the records");
  const warm = await bareProducerRun(broker.brokers, broker.pid!, pmPid, records, { mode: "batched", batchSize: options.batchSize, concurrency: options.concurrency, partitions: BENCH_PARTITIONS, topicPrefix: "warmup-", producers: 1 });
  return {
    records,
    rows: [
      ["backlog", `${fmt.int(written.events)} events (bench:relay's writer: 50% 1-event, 50% 100-event tx, ~200-byte JSON + traceparent header) over ${BENCH_STREAMS.length} streams × ${BENCH_PARTITIONS} partitions (${BENCH_STREAMS.join(", ")}) → ${BENCH_STREAMS.length} topics × ${BENCH_PARTITIONS} partitions (stream partition p → Kafka partition p)`],
      ["records", `${fmt.int(bytes / options.events)} B/record on average (key + value + 8 headers, uncompressed); read back and built with toKafkaRecord in ${readSeconds.toFixed(1)} s (untimed)`],
      ["preparation (untimed)", `written in ${written.seconds.toFixed(1)} s, relayed in ${((doneAt - activeAt) / 1000).toFixed(1)} s (relay stopped before (a)), vacuum analyze; broker warm-up pass ${warm.seconds.toFixed(1)} s`],
    ],
  };
}

function recordBytes(r: { key?: unknown; value: unknown; headers?: Record<string, unknown> }): number {
  let n = String(r.key ?? "").length + String(r.value ?? "").length;
  for (const [name, value] of Object.entries(r.headers ?? {})) n += name.length + String(value).length;
  return n;
}

function catchUpWith(bench: Bench, launcher: BridgeLauncher, nodeArgs: readonly string[], producers: number, n: number, label: string): Promise<BridgeCatchupResult> {
  return bridgeCatchUp(launcher, bench.sql, bench.admin, bench.pmPid, {
    url: bench.cluster.url,
    brokers: bench.broker.brokers,
    brokerPid: bench.broker.pid!,
    partitions: BENCH_PARTITIONS,
    streams: BENCH_STREAMS,
    topicPrefix: `r${n}-${label}-`,
    events: options.events,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    producers,
    group: `bench-bridge-catchup-${n}-${label}`,
    nodeArgs,
    ...(options.profileDir && n === 1 ? { profileDir: options.profileDir } : {}),
  });
}

async function round(bench: Bench, records: PartitionRecords[], n: number): Promise<Round> {
  progress(`round ${n} of ${options.rounds}`);
  let a: BridgeCatchupResult | null = null;
  const compared: BridgeCatchupResult[] = [];
  const runCompared = async () => {
    for (const [i, { launcher, nodeArgs, producers }] of bench.compared.entries()) {
      progress(`(a′${i + 1}) ${options.compare[i]!.label}`);
      compared.push(await catchUpWith(bench, launcher, nodeArgs, producers, n, `a${i + 1}`));
    }
  };
  if (!options.skip.has("a")) {
    // Even rounds run the compared copies first: neither side always meets the broker right after the other.
    if (n % 2 === 0) await runCompared();
    a = await catchUpWith(bench, bench.launcher, options.bridgeNodeArgs, options.producers, n, "a");
    if (n % 2 === 1) await runCompared();
  }
  const bare: BareResult[] = [];
  if (!options.skip.has("b")) {
    for (const mode of options.bare) {
      bare.push(await bareProducerRun(bench.broker.brokers, bench.broker.pid!, bench.pmPid, records, {
        mode,
        batchSize: options.batchSize,
        concurrency: options.concurrency,
        partitions: BENCH_PARTITIONS,
        topicPrefix: `r${n}-bare-${mode}-`,
        producers: options.producers,
      }));
    }
  }
  return { a, compared, bare };
}

async function latencyPhase(bench: Bench): Promise<string[][]> {
  progress("starting a relay for (c)");
  const relay = startRelayProcess({ databaseUrl: bench.cluster.url, slotName: RELAY_SLOT });
  const rows: string[][] = [];
  try {
    await relay.active;
    const runs = [
      { launcher: bench.launcher, nodeArgs: options.bridgeNodeArgs, producers: options.producers, label: "(c)", stream: LAG_STREAM },
      ...bench.compared.map((c, i) => ({ ...c, label: `(c′${i + 1})`, stream: `${LAG_STREAM}-${i + 1}` })),
    ];
    for (const [i, run] of runs.entries()) {
      if (i > 0) progress(`${run.label} ${options.compare[i - 1]!.label}`);
      const r = await measureBridgeLatency(run.launcher, bench.sql, bench.admin, bench.pmPid, {
        url: bench.cluster.url,
        brokers: bench.broker.brokers,
        brokerPid: bench.broker.pid!,
        stream: run.stream,
        partitions: BENCH_PARTITIONS,
        group: `bench-bridge-latency-${i}`,
        rate: options.lagRate,
        seconds: options.lagSeconds,
        warmupSeconds: 1,
        batchSize: options.batchSize,
        concurrency: options.concurrency,
        producers: run.producers,
        nodeArgs: run.nodeArgs,
      });
      rows.push(...latencyRows(r, run.label, run.stream, i > 0 ? options.compare[i - 1]!.label : null, reportSettings));
    }
  } finally {
    await relay.stop();
  }
  return rows;
}

async function run(bench: Bench, loadBefore: string): Promise<void> {
  const serverLine = await describeServer(bench.sql);
  await migrate(bench.sql, { slotName: RELAY_SLOT, decoder: flags.decoder });
  const lagStreams = [LAG_STREAM, ...options.compare.map((_, i) => `${LAG_STREAM}-${i + 1}`)];
  for (const stream of [...BENCH_STREAMS, ...lagStreams]) await createStream(bench.sql, stream, BENCH_PARTITIONS);

  const rows: string[][] = [
    ["server / decoder", `${serverLine} / ${flags.decoder}`],
    ["Kafka", `Apache Kafka ${kafkaVersion()}, one KRaft node (testkit: broker + controller in one JVM, -Xmx512m, 127.0.0.1), topics with replication factor 1, log flush by the OS (Kafka's default)`],
  ];
  let profiles: ReadonlyArray<readonly [string, ProfileSummary]> = [];
  if (!options.skip.has("a") || !options.skip.has("b")) {
    const backlog = await backlogPhase(bench);
    rows.push(...backlog.rows);
    const rounds: Round[] = [];
    for (let n = 1; n <= options.rounds; n++) rounds.push(await round(bench, backlog.records, n));
    profiles = [
      ...(rounds[0]!.a?.profile ? [["(a)", rounds[0]!.a.profile] as const] : []),
      ...rounds[0]!.compared.flatMap((c, i) => (c.profile ? [[`(a′${i + 1})`, c.profile] as const] : [])),
    ];
    rows.push(...comparisonRows(rounds, reportSettings));
  }
  if (!options.skip.has("c")) rows.push(...(await latencyPhase(bench)));
  rows.push(
    ["bridge settings", `${sources() ? `${sources()} (NOT the repository's), ` : ""}own process (esbuild bundle of bench/support/bridge-child.ts${options.bridgeNodeArgs.length ? `, node ${options.bridgeNodeArgs.join(" ")}` : ""}; its postgres and kafkajs imports timed by bridge-timing.ts), startBridge defaults: postgres.js pool max 4 + concurrency, ${options.producers} idempotent producers (acks -1, maxInFlightRequests 1; a partition sticks to one), group joined fresh (startFrom earliest); topics made beforehand with the streams' partition counts`],
    ["server settings", "as in the first row, plus track_commit_timestamp=on (dates each relay batch: the split of (c))"],
    ["relay settings", `relay child bundled by esbuild, MAX_BATCH_EVENTS=5000 (default), node ${cliHeapLimit}`],
    ["machine", `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}`],
  );
  process.stdout.write(`\nKafka bridge benchmark (${new Date().toISOString()})\n${formatTable(["figure", "value"], rows, [0, 1])}\n`);
  for (const [label, profile] of profiles) printProfile(label, profile);
  if (options.profileDir) process.stdout.write(`(profile kept in ${options.profileDir})\n`);
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} and a Kafka broker (load average ${loadBefore})`);
// track_commit_timestamp: when each relay batch committed, to split (c) into the relay's and the bridge's share.
const [cluster, broker] = await Promise.all([
  startBenchServer(flags.server, { ...flags.settings, track_commit_timestamp: "on" }),
  // A deleted topic's files go at once (default: a minute later), so runs do not pile data up in the broker.
  KafkaBroker.start({ settings: { "file.delete.delay.ms": 0 } }),
]);
const sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
const admin = kafkaAdmin(broker.brokers);
const launcher = await BridgeLauncher.build({ bridge: options.bridgeSource, client: options.clientSource });
const compared: Array<{ launcher: BridgeLauncher; nodeArgs: string[]; producers: number }> = [];
for (const c of options.compare) {
  compared.push({
    launcher: c.source === null ? launcher : await BridgeLauncher.build({ bridge: c.source, client: options.clientSource }),
    nodeArgs: [...options.bridgeNodeArgs, ...c.nodeArgs],
    producers: c.producers ?? options.producers,
  });
}
let exitCode = 0;
try {
  await admin.connect();
  await run({ cluster, sql, pmPid: postmasterPid(cluster), broker, admin, launcher, compared }, loadBefore);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:bridge failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n--- broker ---\n${broker.brokerLog()}\n`);
} finally {
  launcher.dispose();
  for (const c of compared) if (c.launcher !== launcher) c.launcher.dispose();
  await admin.disconnect().catch(() => undefined);
  await sql.end({ timeout: 5 });
  await cluster.destroy();
  await broker.stop();
}
process.exit(exitCode);
