/**
 * bench:cdc's snapshot phase: how fast the relay reads a captured table's
 * existing rows into its stream (tributary.capture() with snapshot
 * 'initial': key-ordered chunks between watermarks, services/relay
 * cdc/snapshotter.ts).
 *
 *   1. a fresh relay (own process, `chunkRows` per chunk) is active;
 *   2. the table is filled with `rows` rows (not captured yet: the relay
 *      decodes that WAL and drops it) and a marker event shows the relay has
 *      passed it, so the clock measures the snapshot alone;
 *   3. capture() starts the clock; tributary.captures is polled until the
 *      table's state is 'streaming' (its last chunk is in the stream). The
 *      time includes the relay noticing the new capture (its session starts
 *      again to load it); the rate is also given from the first rows in the
 *      stream on.
 *   4. the stream must hold exactly `rows` 'row.read' events.
 */
import type { Sql } from "postgres";
import { createCdcTable, fillTable } from "./cdc-table.ts";
import { cpuBetween, cpuSnapshot, describeCpu, processCpuSeconds } from "./cpu-accounting.ts";
import { checkpointVersion } from "./relay-checkpoint.ts";
import { startRelayProcess } from "./relay-process.ts";
import { fmt, progress } from "./report-table.ts";
import { relayServerCpu } from "./server-processes.ts";

export interface SnapshotOptions {
  readonly cluster: { readonly url: string };
  readonly sql: Sql;
  readonly pmPid: number;
  readonly slotName: string;
  readonly table: string;
  readonly rows: number;
  readonly chunkRows: number;
  readonly batchEvents: number;
  readonly nodeArgs: readonly string[];
  /** A stream (1 partition) for the caught-up marker. */
  readonly markerStream: string;
}

export interface SnapshotResult {
  readonly chunkRows: number;
  readonly rows: number;
  /** capture() → state 'streaming'. */
  readonly seconds: number;
  /** capture() → the first chunk's rows counted in tributary.captures. */
  readonly firstRowsSeconds: number;
  /** The rows counted then (the first chunk: the snapshotter reads a few rows first, to learn their width). */
  readonly firstRows: number;
  readonly relayCpuPerRowUs: number;
  readonly serverCpuPerRowUs: number;
  /** Of the server's: the relay session's walsender and its backends (the session that loaded the capture). */
  readonly walsenderCpuPerRowUs: number;
  readonly backendsCpuPerRowUs: number;
  readonly peakRss: number;
  readonly batches: number;
  readonly cpu: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function streamLength(sql: Sql, stream: string): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select coalesce(sum(next_offset), 0)::text as n from tributary.partition_offsets where stream = ${stream}`;
  return Number(row!.n);
}

/** Appends a marker and waits until the relay has put it into the stream: it has read everything committed before. */
async function waitForRelayToPass(sql: Sql, stream: string, timeoutMs = 600_000): Promise<void> {
  const before = await streamLength(sql, stream);
  await sql`select tributary.append(${stream}, 'marker', 'bench.marker', '{}')`;
  const deadline = performance.now() + timeoutMs;
  while ((await streamLength(sql, stream)) <= before) {
    if (performance.now() > deadline) throw new Error(`the relay did not reach the marker in ${stream} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function measureSnapshot(o: SnapshotOptions): Promise<SnapshotResult> {
  const { sql, table } = o;
  const stream = `public.${table}`;
  progress(`snapshot: ${fmt.int(o.rows)} rows, chunks of ${fmt.int(o.chunkRows)}`);
  await createCdcTable(sql, table);
  const relay = startRelayProcess({
    databaseUrl: o.cluster.url,
    slotName: o.slotName,
    maxBatchEvents: o.batchEvents,
    snapshotChunkRows: o.chunkRows,
    nodeArgs: o.nodeArgs,
  });
  try {
    await relay.active;
    await fillTable(sql, table, o.rows);
    await waitForRelayToPass(sql, o.markerStream);
    relay.resetPeakRss();
    const batchesBefore = await checkpointVersion(sql, o.slotName);
    const before = cpuSnapshot(o.pmPid);
    const relayCpuBefore = processCpuSeconds(relay.pid) ?? 0;
    const startedAt = performance.now();
    await sql`select tributary.capture(${table}, '{"snapshot": "initial"}')`;
    let firstRowsAt: number | null = null;
    let firstRows = 0;
    let lastLog = startedAt;
    for (;;) {
      const [row] = await sql<{ state: string; rows_done: string; stop_reason: string | null }[]>`
        select state, rows_done::text, stop_reason from tributary.captures where "table" = ${stream}`;
      const now = performance.now();
      if (row?.state === "stopped") throw new Error(`the capture of ${stream} stopped: ${row.stop_reason}\n${relay.stderr()}`);
      if (firstRowsAt === null && Number(row?.rows_done ?? 0) > 0) {
        firstRowsAt = now;
        firstRows = Number(row!.rows_done);
      }
      if (row?.state === "streaming") break;
      if (now - lastLog > 2000) {
        progress(`  snapshotted ${fmt.int(Number(row?.rows_done ?? 0))}`);
        lastLog = now;
      }
      if (now - startedAt > 600_000) throw new Error(`the snapshot of ${stream} did not end within 600 s\n${relay.stderr()}`);
      await sleep(25);
    }
    const doneAt = performance.now();
    const relayCpu = (processCpuSeconds(relay.pid) ?? 0) - relayCpuBefore;
    const cpu = cpuBetween(before, cpuSnapshot(o.pmPid));
    const backends = await relayServerCpu(sql, o.slotName);
    const batches = (await checkpointVersion(sql, o.slotName)) - batchesBefore;
    const peakRss = relay.peakRss();
    const [stored] = await sql<{ n: string; reads: string }[]>`
      select count(*)::text as n, count(*) filter (where type = 'row.read')::text as reads from tributary.events where stream = ${stream}`;
    if (Number(stored!.n) !== o.rows || Number(stored!.reads) !== o.rows) {
      throw new Error(`${stream} holds ${stored!.n} events (${stored!.reads} row.read), expected exactly ${o.rows} reads`);
    }
    const seconds = (doneAt - startedAt) / 1000;
    progress(`snapshot: ${seconds.toFixed(2)} s = ${fmt.int(o.rows / seconds)} rows/s`);
    return {
      chunkRows: o.chunkRows,
      rows: o.rows,
      seconds,
      firstRowsSeconds: ((firstRowsAt ?? doneAt) - startedAt) / 1000,
      firstRows: firstRowsAt === null ? o.rows : firstRows,
      relayCpuPerRowUs: (relayCpu * 1e6) / o.rows,
      serverCpuPerRowUs: (cpu.server * 1e6) / o.rows,
      walsenderCpuPerRowUs: (backends.walsender * 1e6) / o.rows,
      backendsCpuPerRowUs: (backends.backends * 1e6) / o.rows,
      peakRss,
      batches,
      cpu: `${describeCpu(cpu)}; relay process ${relayCpu.toFixed(2)} s`,
    };
  } finally {
    const exit = await relay.stop();
    if (exit !== 0) process.stderr.write(`relay child (snapshot) exited with ${exit}: ${relay.stderr()}\n`);
  }
}
