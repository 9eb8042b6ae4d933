/**
 * bench:bridge (a): one bridge, in its own process, forwards a backlog that
 * the relay has already put into the stream. Timed from the startBridge()
 * call (Kafka admin connect, topic check, producer connect and group join
 * included) until the topics' end offsets show every event (the high
 * watermark: acknowledged records only). Also: the time from "ready", the
 * child's CPU and peak RSS, the CPU of its server backends and of the
 * broker, where its wall time went (bridge-timing.ts), and, after the clock
 * stopped, that every Kafka partition holds exactly its stream partition's
 * events and that the group committed every partition's end.
 */
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { Admin } from "kafkajs";
import type { Sql } from "postgres";
import { cpuBetween, cpuSnapshot, processCpuSeconds, type CpuUse } from "./cpu-accounting.ts";
import { onlyProfile, summarizeBridgeProfile, type ProfileSummary } from "./bridge-profile.ts";
import type { BridgeLauncher, BridgeStart } from "./bridge-process.ts";
import type { BridgeTimings } from "./bridge-timing.ts";
import { createTopics, endOffsets, waitForRecords } from "./bridge-topics.ts";
import { fmt, progress } from "./report-table.ts";

export interface BridgeCatchupOptions {
  readonly url: string;
  readonly brokers: readonly string[];
  readonly brokerPid: number;
  /** Partitions of every stream (and of its topic). */
  readonly partitions: number;
  readonly streams: readonly string[];
  /** Fresh topics (prefix + stream) for this run, deleted after it. */
  readonly topicPrefix: string;
  readonly events: number;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly producers?: number;
  readonly group: string;
  /** Run the child under node --cpu-prof (a fresh folder under this one). */
  readonly profileDir?: string;
  readonly nodeArgs?: readonly string[];
}

export interface BridgeCatchupResult {
  readonly seconds: number;
  readonly rate: number;
  /** From "ready" (connected, joined) to the last event in Kafka. */
  readonly readySeconds: number;
  readonly readyRate: number;
  readonly startupMs: number;
  readonly allCommittedMs: number;
  readonly bridgeCpuSeconds: number;
  readonly backendCpuSeconds: number;
  readonly brokerCpuSeconds: number;
  readonly peakRssBytes: number;
  readonly cpu: CpuUse;
  readonly timings: BridgeTimings;
  readonly profile: ProfileSummary | null;
}

/** The application_name the bridge gives its PostgreSQL connections (bridge.ts). */
const BRIDGE_APPLICATION_NAME = "tributary-bridge";

/** CPU seconds so far of the server backends serving the bridge. */
export async function bridgeBackendCpu(sql: Sql): Promise<number> {
  const rows = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = ${BRIDGE_APPLICATION_NAME}`;
  return rows.reduce((sum, r) => sum + (processCpuSeconds(r.pid) ?? 0), 0);
}

async function committedTotal(sql: Sql, group: string): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select coalesce(sum(next_offset), 0)::text as n from tributary.group_offsets where group_name = ${group}`;
  return Number(row!.n);
}

/** Every Kafka partition p holds exactly as many records as stream partition p (the topics were fresh). */
async function assertForwardedOnce(sql: Sql, admin: Admin, streams: readonly string[], topicPrefix: string): Promise<void> {
  const rows = await sql<{ stream: string; partition: number; next_offset: string }[]>`
    select stream, partition, next_offset::text from tributary.partition_offsets where stream = any (${[...streams]}::text[])`;
  const ends = await endOffsets(admin, streams.map((s) => topicPrefix + s));
  for (const r of rows) {
    const inKafka = ends.get(topicPrefix + r.stream)?.[r.partition] ?? 0;
    if (inKafka !== Number(r.next_offset)) {
      throw new Error(`(a) Kafka partition ${r.stream}/${r.partition} holds ${inKafka} records, the stream partition ${r.next_offset} events`);
    }
  }
}

export async function bridgeCatchUp(launcher: BridgeLauncher, sql: Sql, admin: Admin, postmasterPid: number, options: BridgeCatchupOptions): Promise<BridgeCatchupResult> {
  progress(`(a) one bridge forwarding ${fmt.int(options.events)} events (batchSize ${options.batchSize}, concurrency ${options.concurrency})${options.profileDir ? " under --cpu-prof" : ""}`);
  const profileDir = options.profileDir ? mkdtempSync(join(options.profileDir, "catchup-")) : undefined;
  const topics = options.streams.map((s) => options.topicPrefix + s);
  await createTopics(admin, topics, options.partitions);
  const before = cpuSnapshot(postmasterPid);
  const brokerBefore = processCpuSeconds(options.brokerPid) ?? 0;
  const bridge = launcher.start({
    databaseUrl: options.url,
    brokers: options.brokers,
    streams: options.streams,
    group: options.group,
    topicPrefix: options.topicPrefix,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    ...(options.producers ? { producers: options.producers } : {}),
    ...(profileDir ? { cpuProfileDir: profileDir } : {}),
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
  });
  try {
    const started: BridgeStart = await Promise.race([bridge.started, bridge.failed]);
    const cpuAtStart = processCpuSeconds(bridge.pid) ?? 0;
    const doneAt = await Promise.race([
      waitForRecords(admin, topics, options.events, { timeoutMs: 30 * 60_000, onProgress: (n) => progress(`  in Kafka ${fmt.int(n)}`) }),
      bridge.failed,
    ]);
    const doneHrUs = Number(process.hrtime.bigint() / 1000n);
    const bridgeCpuSeconds = (processCpuSeconds(bridge.pid) ?? 0) - cpuAtStart;
    const brokerCpuSeconds = (processCpuSeconds(options.brokerPid) ?? 0) - brokerBefore;
    const cpu = cpuBetween(before, cpuSnapshot(postmasterPid));
    const timings = await bridge.stats();
    const peakRssBytes = bridge.peakRss();
    const backendCpuSeconds = await bridgeBackendCpu(sql);
    const readyAt = await bridge.ready;
    // The last batches' commits follow their acks: wait for them (they prove the commits, not the speed).
    const deadline = Date.now() + 30_000;
    while ((await committedTotal(sql, options.group)) < options.events) {
      if (Date.now() > deadline) throw new Error(`(a) the bridge group's committed offsets did not reach ${options.events} within 30 s of the last record`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const allCommittedMs = Date.now() - started.epochMs;
    const exit = await bridge.stop();
    if (exit !== 0) throw new Error(`(a) bridge exited with ${exit}: ${bridge.stderr()}`);
    await assertForwardedOnce(sql, admin, options.streams, options.topicPrefix);
    await admin.deleteTopics({ topics });
    const seconds = (doneAt - started.epochMs) / 1000;
    const readySeconds = (doneAt - readyAt) / 1000;
    progress(`(a) ${seconds.toFixed(2)} s = ${fmt.int(options.events / seconds)} events/s (${fmt.int(options.events / readySeconds)} from ready)`);
    const profile = profileDir ? summarizeBridgeProfile(onlyProfile(profileDir), launcher.script, [started.hrUs, doneHrUs]) : null;
    return {
      seconds,
      rate: options.events / seconds,
      readySeconds,
      readyRate: options.events / readySeconds,
      startupMs: readyAt - started.epochMs,
      allCommittedMs,
      bridgeCpuSeconds,
      backendCpuSeconds,
      brokerCpuSeconds,
      peakRssBytes,
      cpu,
      timings,
      profile,
    };
  } finally {
    await bridge.kill();
  }
}

/** Table rows for (a). */
export function bridgeCatchupRows(r: BridgeCatchupResult, events: number, label = "(a)"): string[][] {
  const perEvent = (s: number) => ((s * 1e6) / events).toFixed(1);
  const t = r.timings;
  const wallMs = r.seconds * 1000;
  const share = (ms: number) => fmt.pct(ms / wallMs);
  const each = (x: { count: number; ms: number }) => (x.ms / Math.max(1, x.count)).toFixed(1);
  const driverOwn = r.cpu.driver - r.bridgeCpuSeconds - r.brokerCpuSeconds;
  const cores = (s: number) => (s / r.cpu.wallSeconds).toFixed(2);
  return [
    [
      `  ${label} bridge process`,
      `CPU ${r.bridgeCpuSeconds.toFixed(2)} s (${perEvent(r.bridgeCpuSeconds)} µs/event, ${(r.bridgeCpuSeconds / r.seconds).toFixed(2)} cores), peak RSS ${fmt.mb(r.peakRssBytes)} (VmHWM); its PostgreSQL backends ${r.backendCpuSeconds.toFixed(2)} s (${perEvent(r.backendCpuSeconds)} µs/event); the broker JVM ${r.brokerCpuSeconds.toFixed(2)} s (${perEvent(r.brokerCpuSeconds)} µs/event)`,
    ],
    [
      `  ${label} CPU during (cores)`,
      `server ${cores(r.cpu.server)}, broker ${cores(r.brokerCpuSeconds)}, bridge ${cores(r.bridgeCpuSeconds)}, benchmark driver ${cores(driverOwn)}, others ${cores(r.cpu.others)}`,
    ],
    [
      `  ${label} bridge wall time (sums over concurrent calls)`,
      `${fmt.int(t.fetch.count)} fetches ${fmt.int(t.fetch.ms)} ms (${each(t.fetch)} ms each, ${fmt.int(t.fetch.items / Math.max(1, t.fetch.count))} rows each); ` +
        `${fmt.int(t.send.count)} producer.send ${fmt.int(t.send.ms)} ms (${each(t.send)} ms each, up to ${t.send.maxConcurrent} at once); ` +
        `${fmt.int(t.commit.count)} commits ${fmt.int(t.commit.ms)} ms (${each(t.commit)} ms each)`,
    ],
    [
      `  ${label} Produce requests`,
      `${fmt.int(t.produce.count)} (${fmt.int(t.send.items / Math.max(1, t.produce.count))} records each), ${fmt.int(t.produce.ms)} ms on the wire in all = ${share(t.produce.ms)} of the run (${each(t.produce)} ms each; one at a time per producer: an idempotent producer holds a per-broker lock), ${fmt.int(t.produce.pendingMs)} ms queued on the connection`,
    ],
  ];
}
