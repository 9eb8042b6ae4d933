/**
 * npm run bench:cdc — how close the relay's table capture comes to the
 * server's own logical decoding speed on the same row changes, its memory,
 * and how fast it snapshots a table.
 *
 *   1. migrate (slot 'tributary'), create a table of ten mixed-type columns,
 *      tributary.capture() it with snapshot 'none' (the publication the relay
 *      reads now holds it), create slots 'bench_recv' and 'bench_census'
 *      (pgoutput: both see the same WAL), write N row changes (inserts,
 *      updates and deletes in transactions of several sizes) from several
 *      connections.
 *   2. (a) pg_recvlogical drains 'bench_recv' to the end LSN into /dev/null,
 *          with the relay's pgoutput options: the decode limit of this server;
 *      (b) the relay (own process) drains 'tributary' into the change stream:
 *          timed from "active" until the stream holds N events;
 *      (c) pg_recvlogical drains 'bench_census' into a file, whose messages
 *          are counted: (a) really received every row change.
 *   3. snapshot: a table of M rows, a fresh relay, tributary.capture() with
 *      snapshot 'initial': rows/s until tributary.captures says 'streaming'.
 *   4. one table of figures and settings.
 * --profile runs (b) under node --cpu-prof and summarizes where the relay's
 * CPU goes.
 *
 * A benchmark, not a test: it asserts only what makes its figures meaningful
 * (every change became exactly one event of its kind, every row one read).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { migrate } from "@tributary/migrate";
import { createStream } from "@tributary/client";
import { cliHeapLimit } from "@tributary/testkit";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { currentWalLsn, describeServer, postmasterPid, startBenchServer, walBytesBetween } from "./support/bench-server.ts";
import { CDC_TABLE_SHAPE, createCdcTable } from "./support/cdc-table.ts";
import { measureSnapshot, type SnapshotResult } from "./support/cdc-snapshot.ts";
import { writeChanges } from "./support/cdc-writer.ts";
import { cpuBetween, cpuSnapshot, describeCpu, loadAverage } from "./support/cpu-accounting.ts";
import { formatProfile, mainThreadProfile, summarizeCpuProfile } from "./support/cpu-profile-summary.ts";
import { pgoutputCensus } from "./support/pgoutput-census.ts";
import { drainSlot } from "./support/recvlogical-drain.ts";
import { drainWithRecvlogical, drainWithRelay, formatGcPauses, type Bench } from "./support/drain-phases.ts";
import { relayChildScript } from "./support/relay-process.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";

const usage = `npm run bench:cdc -- [flags]
${serverUsage}
  --changes N                   row changes in the WAL (default 200000)
  --tx-sizes N,N,…              changes per transaction, each size an equal share of the changes (default 1,10,100,1000)
  --writers N                   concurrent writer connections (default 8)
  --batch-events N              relay MAX_BATCH_EVENTS (default 5000, the relay's default)
  --snapshot-rows N             rows of the snapshotted table (default 200000; 0 = no snapshot phase)
  --snapshot-chunk-rows N       the relay's snapshotChunkRows (default 2000, the relay's default)
  --snapshot-also-chunk-rows N  then another table of the same rows with this chunk size (default 10000; 0 = none)
  --relay-node-args=…           extra node flags for the relay process (default ${cliHeapLimit}, tributary relay's)
  --profile                     run (b) under node --cpu-prof and summarize the profile`;

const RELAY_SLOT = "tributary";
const RECV_SLOT = "bench_recv";
const CENSUS_SLOT = "bench_census";
const TABLE = "bench_cdc";
const STREAM = `public.${TABLE}`;
/** The issue's bars: relay / pg_recvlogical changes/s, and the relay's peak RSS. */
const REQUIRED_RATIO = 0.5;
const GOAL_RATIO = 0.9;
const MAX_RSS_BYTES = 300 * (1 << 20);
/** The relay's default snapshotChunkRows (services/relay relay.ts). */
const RELAY_CHUNK_ROWS = 2000;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    changes: { type: "string", default: "200000" },
    "tx-sizes": { type: "string", default: "1,10,100,1000" },
    writers: { type: "string", default: "8" },
    "batch-events": { type: "string", default: "5000" },
    "snapshot-rows": { type: "string", default: "200000" },
    "snapshot-chunk-rows": { type: "string", default: String(RELAY_CHUNK_ROWS) },
    "snapshot-also-chunk-rows": { type: "string", default: "10000" },
    "relay-node-args": { type: "string", default: cliHeapLimit },
    profile: { type: "boolean", default: false },
  },
  usage,
);
if (flags.decoder !== "pgoutput") throw new Error("bench:cdc measures pgoutput (its decode limit is pg_recvlogical with pgoutput): leave --decoder out");
const options = {
  changes: positiveInt(values.changes, "changes"),
  txSizes: String(values["tx-sizes"]).split(",").map((n) => positiveInt(n, "tx-sizes")),
  writers: positiveInt(values.writers, "writers"),
  batchEvents: positiveInt(values["batch-events"], "batch-events"),
  snapshotRows: values["snapshot-rows"] === "0" ? 0 : positiveInt(values["snapshot-rows"], "snapshot-rows"),
  snapshotChunkRows: positiveInt(values["snapshot-chunk-rows"], "snapshot-chunk-rows"),
  alsoChunkRows: values["snapshot-also-chunk-rows"] === "0" ? null : positiveInt(values["snapshot-also-chunk-rows"], "snapshot-also-chunk-rows"),
  relayNodeArgs: String(values["relay-node-args"] ?? "").split(/\s+/).filter(Boolean),
  profileDir: values.profile === true ? mkdtempSync(join(tmpdir(), "tributary-cdc-prof-")) : null,
};

const perChange = (seconds: number) => ((seconds * 1e6) / options.changes).toFixed(1);

/** 1. The WAL of row changes. */
async function writePhase({ cluster, sql, pmPid }: Bench) {
  progress(`writing ${fmt.int(options.changes)} row changes with ${options.writers} connections`);
  const startLsn = await currentWalLsn(sql);
  const before = cpuSnapshot(pmPid);
  const written = await writeChanges(cluster.url, TABLE, options.changes, options.txSizes, options.writers, (n) => progress(`  written ${fmt.int(n)}`));
  const cpu = cpuBetween(before, cpuSnapshot(pmPid));
  const endLsn = await currentWalLsn(sql);
  const walBytes = await walBytesBetween(sql, startLsn, endLsn);
  progress(`changes written in ${written.seconds.toFixed(1)} s; WAL ${fmt.mb(walBytes)} up to ${endLsn}`);
  const bySize = [...written.transactionsBySize].sort(([a], [b]) => a - b).map(([size, n]) => `${fmt.int(n)}×${size}`).join(" + ");
  return {
    written,
    endLsn,
    walBytes,
    rows: [
      ["table", `${TABLE}: ${CDC_TABLE_SHAPE}; REPLICA IDENTITY DEFAULT`],
      ["changes written", `${fmt.int(written.changes)}: ${fmt.int(written.inserts)} inserts, ${fmt.int(written.updates)} updates, ${fmt.int(written.deletes)} deletes`],
      ["transactions (count × changes)", `${fmt.int(written.transactions)}: ${bySize}; ${options.writers} conns, ${written.seconds.toFixed(1)} s = ${fmt.int(written.changes / written.seconds)} changes/s`],
      ["WAL to decode", `${fmt.mb(walBytes)} (${fmt.int(walBytes / options.changes)} B/change), ${startLsn} → ${endLsn}`],
    ],
    cpuRow: ["CPU during write", describeCpu(cpu)],
  };
}

/** 2a. The decode limit: pg_recvlogical into /dev/null. */
async function decodeLimitPhase(bench: Bench, endLsn: string, walBytes: number) {
  progress("(a) pg_recvlogical draining the changes");
  const { seconds, walsenderCpu, clientCpu, cpu } = await drainWithRecvlogical(bench, RECV_SLOT, flags.decoder, endLsn);
  const rate = options.changes / seconds;
  progress(`(a) ${seconds.toFixed(2)} s = ${fmt.int(rate)} changes/s`);
  return {
    rate,
    cpu: walsenderCpu + clientCpu,
    headline: ["(a) pg_recvlogical → /dev/null", `${fmt.int(rate)} changes/s (${seconds.toFixed(2)} s, ${(walBytes / (1 << 20) / seconds).toFixed(1)} MB/s of WAL)`],
    cpuRow: ["CPU during (a)", `${describeCpu(cpu)}; walsender ${walsenderCpu.toFixed(2)} s, pg_recvlogical ${clientCpu.toFixed(2)} s`],
  };
}

/** 2b. The relay, in its own process, drains the same WAL into the change stream. */
async function relayDrainPhase(bench: Bench, expected: { inserts: number; updates: number; deletes: number }) {
  progress(`(b) relay draining the changes${options.profileDir ? " (under --cpu-prof)" : ""}`);
  const drain = await drainWithRelay(bench, {
    slotName: RELAY_SLOT, events: options.changes, batchEvents: options.batchEvents, nodeArgs: options.relayNodeArgs,
    cpuProfileDir: options.profileDir, onProgress: (n) => progress(`  streamed ${fmt.int(n)}`),
  });
  await checkChangeEvents(bench.sql, expected);
  const rate = options.changes / drain.seconds;
  progress(`(b) ${drain.seconds.toFixed(2)} s = ${fmt.int(rate)} changes/s`);
  const [size] = await bench.sql<{ data: string }[]>`select avg(octet_length(data::text))::int::text as data from tributary.events where stream = ${STREAM}`;
  return {
    rate,
    cpu: drain.walsenderCpu + drain.backendsCpu + drain.relayProcessCpu,
    peakRss: drain.peakRss,
    headline: [`(b) relay → ${STREAM}${options.profileDir ? " [profiled]" : ""}`, `${fmt.int(rate)} changes/s (${drain.seconds.toFixed(2)} s from active; ${drain.secondsFromSpawn.toFixed(2)} s from spawn)`],
    details: [
      ["CPU µs/change of (b)", `walsender ${perChange(drain.walsenderCpu)} + relay's writes ${perChange(drain.backendsCpu)} + relay process ${perChange(drain.relayProcessCpu)}`],
      ["relay batches during (b)", `${fmt.int(drain.batches)} (${fmt.int(options.changes / Math.max(1, drain.batches))} events/batch); event data ${size!.data} B on average (jsonb text)`],
      // The relay's walsender decodes this WAL too (pgoutput then drops it: tributary.events is not published).
      ["WAL the relay wrote during (b)", `${fmt.mb(drain.walBytes)} (${fmt.int(drain.walBytes / options.changes)} B/change): its walsender decodes it as well`],
      ["relay GC pauses during (b)", formatGcPauses(drain)],
    ],
    cpuRow: ["CPU during (b)", `${describeCpu(drain.cpu)}; walsender ${drain.walsenderCpu.toFixed(2)} s, relay's backends ${drain.backendsCpu.toFixed(2)} s, relay process ${drain.relayProcessCpu.toFixed(2)} s`],
  };
}

/** Every change became exactly one event of its kind (no update changes the key). */
async function checkChangeEvents(sql: Sql, expected: { inserts: number; updates: number; deletes: number }): Promise<void> {
  const rows = await sql<{ type: string; n: string }[]>`select type, count(*)::text as n from tributary.events where stream = ${STREAM} group by type`;
  const got = (type: string) => Number(rows.find((r) => r.type === type)?.n ?? 0);
  const want = { "row.inserted": expected.inserts, "row.updated": expected.updates, "row.deleted": expected.deletes };
  const total = rows.reduce((sum, r) => sum + Number(r.n), 0);
  for (const [type, n] of Object.entries(want)) {
    if (got(type) !== n || total !== options.changes) {
      throw new Error(`${STREAM} holds ${JSON.stringify(rows)}, expected exactly ${JSON.stringify(want)}`);
    }
  }
}

/** 2c. What (a) received: the same slot's twin drained into a file, its pgoutput messages counted. */
async function censusPhase({ cluster }: Bench, endLsn: string, expected: { inserts: number; updates: number; deletes: number }) {
  progress("(c) pg_recvlogical draining the changes into a file, to count what pgoutput sends");
  const dir = mkdtempSync(join(tmpdir(), "tributary-cdc-census-"));
  try {
    const file = join(dir, "recvlogical.out");
    await drainSlot(cluster.url, CENSUS_SLOT, flags.decoder, endLsn, file);
    const census = pgoutputCensus(file);
    const kind = (k: string) => census.byKind.get(k) ?? 0;
    if (kind("I") !== expected.inserts || kind("U") !== expected.updates || kind("D") !== expected.deletes) {
      throw new Error(`pg_recvlogical received ${JSON.stringify([...census.byKind])}, expected I ${expected.inserts}, U ${expected.updates}, D ${expected.deletes}`);
    }
    const kinds = [...census.byKind].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ${fmt.int(n)}`).join(", ");
    return [
      "(a) received (census of a twin slot)",
      `${fmt.int(census.messages)} messages, ${fmt.mb(census.bytes)} (${kinds}); row changes ${fmt.mb(census.changeBytes)} = ${fmt.int(census.changeBytes / options.changes)} B/change`,
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function snapshotRows(result: SnapshotResult): string[][] {
  const label = `snapshot, chunks of ${fmt.int(result.chunkRows)} rows`;
  // From the first poll (every 25 ms) that showed rows in the stream; a snapshot of one chunk has no "from then".
  const rest = result.seconds - result.firstRowsSeconds;
  const fromThen = rest >= 0.1 && result.firstRows < result.rows ? `; from then ${fmt.int((result.rows - result.firstRows) / rest)} rows/s` : "";
  return [
    [label, `${fmt.int(result.rows / result.seconds)} rows/s: ${fmt.int(result.rows)} rows in ${result.seconds.toFixed(2)} s from capture() to 'streaming' (first ${fmt.int(result.firstRows)} rows in the stream after ${result.firstRowsSeconds.toFixed(2)} s${fromThen})`],
    [`${label}: CPU µs/row`, `relay process ${result.relayCpuPerRowUs.toFixed(1)}; server ${result.serverCpuPerRowUs.toFixed(1)} (walsender ${result.walsenderCpuPerRowUs.toFixed(1)} + relay's backends ${result.backendsCpuPerRowUs.toFixed(1)} + rest of the server); relay peak RSS ${fmt.mb(result.peakRss)}; ${fmt.int(result.batches)} batches`],
    [`CPU during ${label}`, result.cpu],
  ];
}

async function run(bench: Bench, loadBefore: string): Promise<void> {
  const serverLine = await describeServer(bench.sql);
  await migrate(bench.sql, { slotName: RELAY_SLOT, decoder: flags.decoder });
  await createCdcTable(bench.sql, TABLE);
  await bench.sql`select tributary.capture(${TABLE}, '{"snapshot": "none"}')`;
  for (const slot of [RECV_SLOT, CENSUS_SLOT]) await bench.sql`select pg_create_logical_replication_slot(${slot}, ${flags.decoder})`;

  const write = await writePhase(bench);
  const decodeLimit = await decodeLimitPhase(bench, write.endLsn, write.walBytes);
  const relay = await relayDrainPhase(bench, write.written);
  const census = await censusPhase(bench, write.endLsn, write.written);
  const snapshots: SnapshotResult[] = [];
  if (options.snapshotRows > 0) {
    await createStream(bench.sql, "bench_marker", 1);
    for (const [i, chunkRows] of [options.snapshotChunkRows, ...(options.alsoChunkRows ? [options.alsoChunkRows] : [])].entries()) {
      snapshots.push(await measureSnapshot({
        ...bench, slotName: RELAY_SLOT, table: `bench_snapshot_${i + 1}`, rows: options.snapshotRows, chunkRows,
        batchEvents: options.batchEvents, nodeArgs: options.relayNodeArgs, markerStream: "bench_marker",
      }));
    }
  }

  const ratio = relay.rate / decodeLimit.rate;
  // The bar is the relay's at its defaults: (b), and the snapshot with the default chunk size.
  const peakRss = Math.max(relay.peakRss, ...snapshots.filter((s) => s.chunkRows === RELAY_CHUNK_ROWS).map((s) => s.peakRss));
  const ratioOk = ratio >= REQUIRED_RATIO;
  const rssOk = peakRss < MAX_RSS_BYTES;
  const rows = [
    ["server / decoder", `${serverLine} / ${flags.decoder}`],
    ...write.rows,
    decodeLimit.headline,
    census,
    relay.headline,
    ["ratio relay / pg_recvlogical", `${ratio.toFixed(2)} (wall clock; required ≥ ${REQUIRED_RATIO}, goal ${GOAL_RATIO})`],
    ["CPU µs/change (a) / (b)", `${perChange(decodeLimit.cpu)} / ${perChange(relay.cpu)}: cost ratio ${(decodeLimit.cpu / relay.cpu).toFixed(2)} (CPU time: far less load-dependent than wall clock)`],
    ...relay.details,
    ["relay peak RSS during (b)", fmt.mb(relay.peakRss)],
    write.cpuRow,
    decodeLimit.cpuRow,
    relay.cpuRow,
    ...snapshots.flatMap(snapshotRows),
    ["required: ratio ≥ 0.5", ratioOk ? `pass (${ratio.toFixed(2)})` : `FAIL (${ratio.toFixed(2)})`],
    ["required: relay peak RSS < 300 MB", `${rssOk ? "pass" : "FAIL"} (${fmt.mb(peakRss)}: the highest of (b) and the snapshot in chunks of ${fmt.int(RELAY_CHUNK_ROWS)})`],
    ["relay settings", `MAX_BATCH_EVENTS=${options.batchEvents}, maxBatchBytes=8 MB (default), relay child bundled by esbuild${options.relayNodeArgs.length ? `, node ${options.relayNodeArgs.join(" ")}` : ""}`],
    ["machine", `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}`],
  ];
  process.stdout.write(`\nCDC benchmark (${new Date().toISOString()})\n${formatTable(["figure", "value"], rows, [0, 1])}\n`);
  if (options.profileDir) {
    const summary = summarizeCpuProfile(mainThreadProfile(options.profileDir), { topFunctions: 25, builtinsToCaller: true, bundle: relayChildScript() });
    process.stdout.write(formatProfile("Relay CPU profile during (b) (categories: a builtin counts for its caller)", summary, options.profileDir));
  }
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
let exitCode = 0;
try {
  await run({ cluster, sql, pmPid: postmasterPid(cluster) }, loadBefore);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:cdc failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n`);
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
process.exit(exitCode);
