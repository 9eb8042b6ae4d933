/**
 * bench:bridge (c): commit → Kafka latency at a steady rate, through a
 * running relay and one bridge (its own process). A producer paces 1-event
 * transactions (lag-probe.ts's pacer) into a fresh stream; a kafkajs
 * consumer in a process of its own (bridge-reader-child.ts, so the pacing
 * does not delay it) reads the bridge's topic. Latency = Date.now() when the reader
 * receives the record − the event's committed_at (the tributary-committed-at
 * header: the commit time from the WAL, the server's clock). One machine,
 * one clock, 1 ms resolution (the header is an ISO date in ms). Events
 * committed in the first `warmupSeconds` are a warm-up.
 *
 * The split: with track_commit_timestamp on, the commit time of the relay's
 * batch transaction that wrote an event (pg_xact_commit_timestamp(xmin)) is
 * when it became readable; the topic is made with
 * message.timestamp.type=LogAppendTime, so each record's timestamp is when
 * the broker appended it (the JVM's clock: the same machine clock). commit →
 * readable is the relay's share, readable → appended the bridge's, appended →
 * received the reader's (Kafka's fetch path plus kafkajs). Read after the run.
 */
import type { Admin } from "kafkajs";
import postgres, { type Sql } from "postgres";
import { cpuBetween, cpuSnapshot, processCpuSeconds, type CpuUse } from "./cpu-accounting.ts";
import type { BridgeLauncher, ReaderRecord } from "./bridge-process.ts";
import type { BridgeTimings } from "./bridge-timing.ts";
import { createTopics } from "./bridge-topics.ts";
import { benchEvent } from "./event-payload.ts";
import { appendTransaction, paceAppends, percentile } from "./lag-probe.ts";
import { assertDense, perSecondText, splitAtReadable, summary, type Triple } from "./latency-split.ts";
import { fmt, progress } from "./report-table.ts";

export interface BridgeLatencyOptions {
  readonly url: string;
  readonly brokers: readonly string[];
  readonly brokerPid: number;
  readonly stream: string;
  readonly partitions: number;
  readonly group: string;
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly producers?: number;
  readonly nodeArgs?: readonly string[];
}


export interface BridgeLatencyResult {
  readonly achievedRate: number;
  /** Events appended at the paced rate (the bridge's CPU figures cover them all). */
  readonly produced: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** p50, p99, max ms of commit → readable (relay), readable → appended in Kafka (bridge), appended → received (reader); relay null without track_commit_timestamp. */
  readonly relayShare: Triple | null;
  readonly bridgeShare: Triple | null;
  readonly readerShare: Triple;
  readonly maxInFlight: number;
  readonly duplicates: number;
  readonly perSecond: string;
  readonly bridgePeakRss: number;
  readonly bridgeCpuSeconds: number;
  readonly brokerCpuSeconds: number;
  readonly windowSeconds: number;
  readonly timings: BridgeTimings;
  readonly cpu: CpuUse;
}

async function waitFor(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`(c) timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function measureBridgeLatency(launcher: BridgeLauncher, sql: Sql, admin: Admin, postmasterPid: number, options: BridgeLatencyOptions): Promise<BridgeLatencyResult> {
  progress(`(c) commit → Kafka latency at ${fmt.int(options.rate)} events/s for ${options.seconds} s`);
  await createTopics(admin, [options.stream], options.partitions, [{ name: "message.timestamp.type", value: "LogAppendTime" }]);
  const received: ReaderRecord[] = [];
  const seen = new Set<string>();
  let duplicates = 0;
  const reader = launcher.startReader(options.brokers, options.stream, (records) => {
    for (const r of records) {
      if (seen.has(r.id)) duplicates++;
      else {
        seen.add(r.id);
        received.push(r);
      }
    }
  });
  const bridge = launcher.start({
    databaseUrl: options.url,
    brokers: options.brokers,
    streams: [options.stream],
    group: options.group,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    ...(options.producers ? { producers: options.producers } : {}),
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
  });
  const producer: Sql = postgres(options.url, { max: 8, onnotice: () => {} });
  try {
    await reader.joined;
    await Promise.race([bridge.ready, bridge.failed]);
    // The first event through the relay, the bridge and the reader starts the clock (steady state, not start-up).
    await appendTransaction(producer, [benchEvent(999_999_999, options.stream)]);
    await waitFor("the first event", () => received.length >= 1, 60_000);
    const windowStart = Date.now() + options.warmupSeconds * 1000;
    const before = cpuSnapshot(postmasterPid);
    const bridgeBefore = processCpuSeconds(bridge.pid) ?? 0;
    const brokerBefore = processCpuSeconds(options.brokerPid) ?? 0;
    const paced = await Promise.race([
      paceAppends(producer, {
        url: options.url,
        stream: options.stream,
        rate: options.rate,
        seconds: options.seconds,
        warmupSeconds: options.warmupSeconds,
        producerConnections: 8,
        eventsPerTransaction: 1,
      }),
      bridge.failed,
    ]);
    await Promise.race([waitFor(`all ${paced.committed} events in Kafka`, () => received.length >= paced.committed + 1, 60_000), bridge.failed]);
    const cpu = cpuBetween(before, cpuSnapshot(postmasterPid));
    const bridgeCpuSeconds = (processCpuSeconds(bridge.pid) ?? 0) - bridgeBefore;
    const brokerCpuSeconds = (processCpuSeconds(options.brokerPid) ?? 0) - brokerBefore;
    const timings = await bridge.stats();
    const bridgePeakRss = bridge.peakRss();
    const exit = await bridge.stop();
    if (exit !== 0) throw new Error(`(c) bridge exited with ${exit}: ${bridge.stderr()}`);
    assertDense(received, { inOrder: true, what: "(c) Kafka partition" });

    const window = received.filter((e) => e.committedMs >= windowStart);
    const lags = window.map((e) => e.receivedMs - e.committedMs).sort((a, b) => a - b);
    const perSecond = perSecondText(window, windowStart, (e) => e.receivedMs - e.committedMs);
    progress(`(c) latency per second of commit time (events/max ms): ${perSecond}`);
    const split = await splitAtReadable(sql, options.stream, window.map((e) => ({ partition: e.partition, offset: e.offset, atMs: e.appendedMs })));
    return {
      relayShare: split?.relay ?? null,
      bridgeShare: split?.next ?? null,
      readerShare: summary(window.map((e) => e.receivedMs - e.appendedMs)),
      achievedRate: paced.committed / paced.seconds,
      produced: paced.committed,
      samples: lags.length,
      p50Ms: percentile(lags, 50),
      p99Ms: percentile(lags, 99),
      maxMs: lags.at(-1) ?? Number.NaN,
      maxInFlight: paced.maxInFlight,
      duplicates,
      perSecond,
      bridgePeakRss,
      bridgeCpuSeconds,
      brokerCpuSeconds,
      windowSeconds: cpu.wallSeconds,
      timings,
      cpu,
    };
  } finally {
    await producer.end({ timeout: 5 });
    await bridge.kill();
    await reader.stop();
  }
}
