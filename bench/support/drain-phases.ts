/**
 * The two drains bench:relay and bench:cdc compare on the same WAL:
 *   (a) pg_recvlogical drains a second slot to the end LSN into /dev/null —
 *       the server's own decode limit;
 *   (b) the relay, in its own process, drains its slot into the stream,
 *       timed from "active" until the stream holds the expected events.
 * Each returns its timing and CPU accounting; the benchmarks format them.
 */
import type { Sql } from "postgres";
import type { Cluster } from "@tributary/testkit";
import type { Decoder } from "@tributary/core";
import { currentWalLsn, walBytesBetween } from "./bench-server.ts";
import { cpuBetween, cpuSnapshot, processCpuSeconds, reapedChildrenCpuSeconds, type CpuUse } from "./cpu-accounting.ts";
import { scrapeEvery, type ScrapeSummary } from "./metrics-scraper.ts";
import { drainSlot } from "./recvlogical-drain.ts";
import { checkpointVersion } from "./relay-checkpoint.ts";
import { startRelayProcess, type GcPauses } from "./relay-process.ts";
import { followWalsenderCpu, relayServerCpu } from "./server-processes.ts";
import { waitForStreamedEvents } from "./stream-progress.ts";

/** What a phase needs: the server, an admin connection, the postmaster for CPU accounting. */
export interface Bench {
  readonly cluster: Cluster;
  readonly sql: Sql;
  readonly pmPid: number;
}

export interface DecodeLimit {
  readonly seconds: number;
  readonly walsenderCpu: number;
  readonly clientCpu: number;
  /** The machine's CPU split over the drain. */
  readonly cpu: CpuUse;
}

/** (a) pg_recvlogical drains `slot` up to `endLsn` into /dev/null. */
export async function drainWithRecvlogical({ cluster, sql, pmPid }: Bench, slot: string, decoder: Decoder, endLsn: string): Promise<DecodeLimit> {
  const before = cpuSnapshot(pmPid);
  const walsender = followWalsenderCpu(sql, "pg_recvlogical");
  const reapedBefore = reapedChildrenCpuSeconds();
  const drained = await drainSlot(cluster.url, slot, decoder, endLsn);
  const clientCpu = reapedChildrenCpuSeconds() - reapedBefore;
  const walsenderCpu = await walsender.stop();
  return { seconds: drained.seconds, walsenderCpu, clientCpu, cpu: cpuBetween(before, cpuSnapshot(pmPid)) };
}

export interface RelayDrainOptions {
  readonly slotName: string;
  /** The stream table holds this many events when the drain is done. */
  readonly events: number;
  readonly batchEvents: number;
  readonly nodeArgs: readonly string[];
  readonly cpuProfileDir?: string | null;
  /** The relay serves its metrics, scraped every second from "active" to the last event. */
  readonly metrics?: boolean;
  readonly onProgress: (streamed: number) => void;
}

export interface RelayDrain {
  /** From "active" to the last event in the stream. */
  readonly seconds: number;
  /** From the spawn of the relay process to the last event in the stream. */
  readonly secondsFromSpawn: number;
  readonly walsenderCpu: number;
  /** The relay's writer backends. */
  readonly backendsCpu: number;
  readonly relayProcessCpu: number;
  readonly cpu: CpuUse;
  /** Batches the relay wrote (checkpoint versions). */
  readonly batches: number;
  /** WAL the server wrote meanwhile (the relay's own writes, which its walsender decodes too). */
  readonly walBytes: number;
  readonly peakRss: number;
  /** The relay's GC pauses during the drain (as reported up to 200 ms before its end). */
  readonly gc: GcPauses;
  /** With `metrics`: the scrapes during the drain. */
  readonly scrapes: ScrapeSummary | null;
}

/** "scavenges 512 ms (230), mark-compact and marking 120 ms (15): 9.1% of the drain". */
export function formatGcPauses(drain: RelayDrain): string {
  const { scavengeMs, scavenges, otherMs, others } = drain.gc;
  const share = (scavengeMs + otherMs) / 1000 / drain.seconds;
  return `scavenges ${Math.round(scavengeMs).toLocaleString("en-US")} ms (${scavenges}), mark-compact and marking ${Math.round(otherMs).toLocaleString("en-US")} ms (${others}): ${(share * 100).toFixed(1)}% of the drain`;
}

/** (b) A relay process drains its slot into the stream; stopped (cleanly) once the stream holds `events`. */
export async function drainWithRelay({ cluster, sql, pmPid }: Bench, options: RelayDrainOptions): Promise<RelayDrain> {
  const batchesBefore = await checkpointVersion(sql, options.slotName);
  const walBefore = await currentWalLsn(sql);
  const before = cpuSnapshot(pmPid);
  const spawnedAt = performance.now();
  const relay = startRelayProcess({
    databaseUrl: cluster.url,
    slotName: options.slotName,
    maxBatchEvents: options.batchEvents,
    nodeArgs: options.nodeArgs,
    ...(options.cpuProfileDir ? { cpuProfileDir: options.cpuProfileDir } : {}),
    ...(options.metrics ? { metrics: true } : {}),
  });
  const activeAt = await relay.active;
  const relayCpuAtActive = processCpuSeconds(relay.pid) ?? 0;
  const scraper = options.metrics ? scrapeEvery(await relay.metricsUrl) : null;
  const doneAt = await waitForStreamedEvents(sql, options.events, 600_000, options.onProgress);
  const scrapes = (await scraper?.stop()) ?? null;
  const relayProcessCpu = (processCpuSeconds(relay.pid) ?? 0) - relayCpuAtActive;
  const backends = await relayServerCpu(sql, options.slotName);
  const cpu = cpuBetween(before, cpuSnapshot(pmPid));
  const batches = (await checkpointVersion(sql, options.slotName)) - batchesBefore;
  const walBytes = await walBytesBetween(sql, walBefore, await currentWalLsn(sql));
  const peakRss = relay.peakRss();
  const gc = relay.gc();
  const exit = await relay.stop();
  if (exit !== 0) throw new Error(`relay child exited with ${exit}: ${relay.stderr()}`);
  return {
    seconds: (doneAt - activeAt) / 1000,
    secondsFromSpawn: (doneAt - spawnedAt) / 1000,
    walsenderCpu: backends.walsender,
    backendsCpu: backends.backends,
    relayProcessCpu,
    cpu,
    batches,
    walBytes,
    peakRss,
    gc,
    scrapes,
  };
}
