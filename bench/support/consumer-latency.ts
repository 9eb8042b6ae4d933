/**
 * bench:consumer (b): commit → handler latency at a steady rate, through a
 * running relay and one group member (its own process). A producer paces
 * 1-event transactions (lag-probe.ts's pacer); the member's handler records
 * Date.now() and the event's committedAt (the commit time from the WAL, the
 * server's clock): one machine, one clock, 1 ms resolution (committedAt is a
 * JavaScript Date). Events committed in the first second are a warm-up.
 *
 * The split: with track_commit_timestamp on, the commit time of the relay's
 * batch transaction that wrote an event (pg_xact_commit_timestamp(xmin)) is
 * when the event became readable. commit → readable is the relay's share,
 * readable → handler the member's; read after the run, so nothing extra runs
 * while it is measured.
 */
import postgres, { type Sql } from "postgres";
import { cpuBetween, cpuSnapshot, type CpuUse } from "./cpu-accounting.ts";
import type { HandledEvent, MemberLauncher } from "./consumer-process.ts";
import { benchEvent } from "./event-payload.ts";
import { appendTransaction, paceAppends, percentile } from "./lag-probe.ts";
import { assertDense, perSecondText, splitAtReadable } from "./latency-split.ts";
import { fmt, progress } from "./report-table.ts";

export interface LatencyOptions {
  readonly url: string;
  readonly stream: string;
  readonly group: string;
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly batchSize: number;
  readonly concurrency: number;
}

export interface LatencyResult {
  readonly achievedRate: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** commit → row readable (the relay's batch committed): p50, p99, max ms; null without track_commit_timestamp. */
  readonly relayShare: readonly [number, number, number] | null;
  /** row readable → handler: p50, p99, max ms. */
  readonly memberShare: readonly [number, number, number] | null;
  readonly maxInFlight: number;
  readonly duplicates: number;
  readonly perSecond: string;
  readonly memberPeakRss: number;
  readonly cpu: CpuUse;
}

async function waitFor(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`(b) timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function measureHandlerLatency(launcher: MemberLauncher, sql: Sql, postmasterPid: number, options: LatencyOptions): Promise<LatencyResult> {
  progress(`(b) commit → handler latency at ${fmt.int(options.rate)} events/s for ${options.seconds} s`);
  const seen = new Set<string>();
  const handled: HandledEvent[] = [];
  let duplicates = 0;
  const member = launcher.start({
    databaseUrl: options.url,
    group: options.group,
    streams: [options.stream],
    mode: "report",
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    onEvents: (events) => {
      for (const e of events) {
        const key = `${e.partition}/${e.offset}`;
        if (seen.has(key)) duplicates++;
        else {
          seen.add(key);
          handled.push(e);
        }
      }
    },
  });
  const producer: Sql = postgres(options.url, { max: 8, onnotice: () => {} });
  try {
    await member.joined;
    // The first event through the relay and the member starts the clock (steady state, not start-up).
    await appendTransaction(producer, [benchEvent(999_999_999, options.stream)]);
    await waitFor("the first event", () => handled.length >= 1, 60_000);
    const windowStart = Date.now() + options.warmupSeconds * 1000;
    const before = cpuSnapshot(postmasterPid);
    const paced = await paceAppends(producer, {
      url: options.url,
      stream: options.stream,
      rate: options.rate,
      seconds: options.seconds,
      warmupSeconds: options.warmupSeconds,
      producerConnections: 8,
      eventsPerTransaction: 1,
    });
    await waitFor(`all ${paced.committed} events`, () => handled.length >= paced.committed + 1, 60_000);
    const cpu = cpuBetween(before, cpuSnapshot(postmasterPid));
    assertDense(handled, { inOrder: false, what: "(b) partition" });

    const window = handled.filter((e) => e.committedMs >= windowStart);
    const lags = window.map((e) => e.handledMs - e.committedMs).sort((a, b) => a - b);
    const perSecond = perSecondText(window, windowStart, (e) => e.handledMs - e.committedMs);
    progress(`(b) latency per second of commit time (events/max ms): ${perSecond}`);
    const exit = await member.stop();
    if (exit !== 0) throw new Error(`(b) member exited with ${exit}: ${member.stderr()}`);
    const split = await splitAtReadable(sql, options.stream, window.map((e) => ({ partition: e.partition, offset: e.offset, atMs: e.handledMs })));
    return {
      relayShare: split?.relay ?? null,
      memberShare: split?.next ?? null,
      achievedRate: paced.committed / paced.seconds,
      samples: lags.length,
      p50Ms: percentile(lags, 50),
      p99Ms: percentile(lags, 99),
      maxMs: lags.at(-1) ?? Number.NaN,
      maxInFlight: paced.maxInFlight,
      duplicates,
      perSecond,
      memberPeakRss: member.sampledPeakRss(),
      cpu,
    };
  } finally {
    await producer.end({ timeout: 5 });
    await member.kill();
  }
}
