/**
 * bench:bridge's report: the rows of its table from the rounds of (a), (a′)
 * and (b) and from (c), and the profile tables. A round's ceiling is its
 * fastest bare way; ratios are per round, figures are medians over rounds,
 * and the details shown are the median round's.
 */
import { readFileSync } from "node:fs";
import type { BareMode, BareResult } from "./bridge-bare-producer.ts";
import { bridgeCatchupRows, type BridgeCatchupResult } from "./bridge-catchup.ts";
import type { BridgeLatencyResult } from "./bridge-latency.ts";
import type { ProfileSummary } from "./bridge-profile.ts";
import { describeCpu } from "./cpu-accounting.ts";
import { fmt, formatTable } from "./report-table.ts";
import { median } from "./median.ts";

/** The settings the rows name. */
export interface ReportSettings {
  readonly events: number;
  readonly batchSize: number;
  readonly concurrency: number;
  /** The bridge's producers, and (b)'s `producers` way's. */
  readonly producers: number;
  readonly partitions: number;
  readonly bare: readonly BareMode[];
  /** What each --compare-src runs (a path and node flags). */
  readonly compareSources: readonly string[];
  readonly profiled: boolean;
  readonly lagRate: number;
  readonly lagSeconds: number;
}

/** One round: (a) on fresh topics with a fresh group, each (a′) likewise, then (b) in each way on fresh topics. */
export interface Round {
  readonly a: BridgeCatchupResult | null;
  /** One per --compare-src. */
  readonly compared: readonly BridgeCatchupResult[];
  readonly bare: readonly BareResult[];
}

const fastest = (runs: readonly BareResult[]) => runs.reduce((x, y) => (y.rate > x.rate ? y : x));
const ceiling = (r: Round) => fastest(r.bare);
const ratioOf = (r: Round) => r.a!.rate / ceiling(r).rate;
/** The fastest way of one producer (one connection): the reference before the bridge had several. */
const singleRuns = (r: Round) => r.bare.filter((b) => b.mode !== "producers");
const ratesText = (rates: readonly number[]) => rates.map((x) => fmt.int(x)).join(" / ");
const othersCores = (cpu: { others: number; wallSeconds: number }) => (cpu.others / cpu.wallSeconds).toFixed(2);

export function comparisonRows(rounds: readonly Round[], s: ReportSettings): string[][] {
  const rows: string[][] = [];
  const withA = rounds.filter((r) => r.a !== null);
  const withBoth = withA.filter((r) => r.bare.length > 0);
  // The round whose ratio is the median one shows its details (with an even count, the lower middle).
  const shown = withBoth.length > 0
    ? [...withBoth].sort((x, y) => ratioOf(x) - ratioOf(y))[(withBoth.length - 1) >> 1]!
    : withA[0];
  if (withA.length > 0) {
    const a = shown!.a!;
    rows.push([
      `(a) bridge, batchSize ${s.batchSize}, concurrency ${s.concurrency}, producers ${s.producers}${s.profiled ? " [round 1 profiled]" : ""}`,
      `${fmt.int(median(withA.map((r) => r.a!.rate)))} ev/s median of ${withA.length} round${withA.length > 1 ? "s" : ""} (${ratesText(withA.map((r) => r.a!.rate))}): ${fmt.int(s.events)} events from the startBridge() call until the topics' end offsets held them all`,
    ]);
    rows.push([
      `  (a) round ${rounds.indexOf(shown!) + 1} (the median ratio's)`,
      `${fmt.int(a.rate)} ev/s: ${a.seconds.toFixed(2)} s; ready after ${fmt.int(a.startupMs)} ms, ${fmt.int(a.readyRate)} ev/s from ready; all committed at ${(a.allCommittedMs / 1000).toFixed(2)} s; others ${othersCores(a.cpu)} cores`,
    ]);
    rows.push(...bridgeCatchupRows(a, s.events));
  }
  for (const [i, source] of s.compareSources.entries()) {
    const runs = withA.map((r) => ({ a: r.compared[i]!, round: r }));
    const shownRun = runs.find((x) => x.round === shown)!.a;
    const t = shownRun.timings;
    const perEvent = (seconds: number) => ((seconds * 1e6) / s.events).toFixed(1);
    rows.push([
      `(a′${i + 1}) ${source}`,
      `${fmt.int(median(runs.map((x) => x.a.rate)))} ev/s median (${ratesText(runs.map((x) => x.a.rate))}), next to (a) in each round` +
        (withBoth.length > 0 ? `; ratio to the round's ceiling ${median(runs.filter((x) => x.round.bare.length > 0).map((x) => x.a.rate / ceiling(x.round).rate)).toFixed(2)} median (${runs.filter((x) => x.round.bare.length > 0).map((x) => (x.a.rate / ceiling(x.round).rate).toFixed(2)).join(" / ")})` : "") +
        `; ÷ (a) of the same round ${runs.map((x) => (x.a.rate / x.round.a!.rate).toFixed(2)).join(" / ")}`,
    ]);
    rows.push([
      `  (a′${i + 1}) round ${rounds.indexOf(shown!) + 1}`,
      `bridge CPU ${perEvent(shownRun.bridgeCpuSeconds)} µs/event (median of rounds ${perEvent(median(runs.map((x) => x.a.bridgeCpuSeconds)))}; (a): ${perEvent(median(withA.map((r) => r.a!.bridgeCpuSeconds)))}), peak RSS ${fmt.mb(shownRun.peakRssBytes)}; broker ${perEvent(shownRun.brokerCpuSeconds)} µs/event; ` +
        `${fmt.int(t.send.count)} sends (${fmt.int(t.send.items / Math.max(1, t.send.count))} records, ${(t.send.ms / Math.max(1, t.send.count)).toFixed(1)} ms each, up to ${t.send.maxConcurrent} at once), ${fmt.int(t.produce.count)} Produce requests (${(t.produce.ms / Math.max(1, t.produce.count)).toFixed(1)} ms each on the wire), ${fmt.int(t.commit.count)} commits ${(t.commit.ms / Math.max(1, t.commit.count)).toFixed(1)} ms each; others ${othersCores(shownRun.cpu)} cores`,
    ]);
  }
  for (const [i, mode] of s.bare.entries()) {
    if (withBoth.length === 0 && rounds.every((r) => r.bare.length === 0)) break;
    const runs = rounds.filter((r) => r.bare.length > 0).map((r) => r.bare[i]!);
    const requests = runs[0]!.produceRequests;
    rows.push([
      `(b) bare producer, ${mode}`,
      `${fmt.int(median(runs.map((b) => b.rate)))} ev/s median (${ratesText(runs.map((b) => b.rate))}); ${fmt.int(requests)} Produce requests of ${fmt.int(s.events / Math.max(1, requests))} records; producer CPU ${((median(runs.map((b) => b.producerCpuSeconds)) * 1e6) / s.events).toFixed(1)} µs/event, broker ${((median(runs.map((b) => b.brokerCpuSeconds)) * 1e6) / s.events).toFixed(1)} µs/event; others ${runs.map((b) => othersCores(b.cpu)).join(" / ")} cores`,
    ]);
  }
  if (rounds.some((r) => r.bare.length > 0)) {
    rows.push([
      "(b) how it sends",
      `kafkajs ${kafkajsVersion()} idempotent producer (acks -1, maxInFlightRequests 1), in the benchmark's process, records prebuilt; ${s.batchSize} records per partition batch; ` +
        "sequential = one partition batch per send(), one at a time; concurrent = one partition batch per send(), " +
        `${s.concurrency} sends in flight (at most one per partition); batched = sendBatch() of ${s.concurrency} partitions' batches per request, one at a time; batched-all = sendBatch() of every partition's next batch; ` +
        `producers = concurrent through ${s.producers} producers (each its own connection), a partition always through the same one, like the bridge. ` +
        "The ceiling of a round is its fastest way; every run on fresh topics, deleted after it",
    ]);
  }
  if (withBoth.length > 0) {
    const ratios = withBoth.map(ratioOf);
    const ratio = median(ratios);
    const perEvent = (seconds: number) => ((seconds * 1e6) / s.events).toFixed(1);
    const shownCeiling = ceiling(shown!);
    rows.push([
      "ratio (a) / (b) — issue 15: ≥ 0.9",
      `${ratio.toFixed(2)} median: ${ratio >= 0.9 ? "met" : "NOT met"}; per round (a) ÷ that round's fastest bare way: ` +
        withBoth.map((r) => `${ratioOf(r).toFixed(2)} (÷ ${ceiling(r).mode})`).join(", ") +
        `; from ready: ${median(withBoth.map((r) => r.a!.readyRate / ceiling(r).rate)).toFixed(2)}; ` +
        `CPU, round ${rounds.indexOf(shown!) + 1}: bridge ${perEvent(shown!.a!.bridgeCpuSeconds)} µs/event, the bare producer (${shownCeiling.mode}) ${perEvent(shownCeiling.producerCpuSeconds)} µs/event`,
    ]);
    const withSingle = withBoth.filter((r) => singleRuns(r).length > 0 && singleRuns(r).length < r.bare.length);
    if (withSingle.length > 0) {
      const single = withSingle.map((r) => r.a!.rate / fastest(singleRuns(r)).rate);
      rows.push([
        "ratio (a) / one bare producer",
        `${median(single).toFixed(2)} median; per round (a) ÷ the fastest way of one producer (one connection): ` +
          withSingle.map((r, i) => `${single[i]!.toFixed(2)} (÷ ${fastest(singleRuns(r)).mode})`).join(", "),
      ]);
    }
  }
  return rows;
}

function kafkajsVersion(): string {
  const manifest = new URL("../../node_modules/kafkajs/package.json", import.meta.url);
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

export function latencyRows(r: BridgeLatencyResult, label: string, stream: string, source: string | null, s: ReportSettings): string[][] {
  const t = r.timings;
  const triple = (v: readonly [number, number, number]) => v.map((x) => x.toFixed(0)).join(" / ");
  const each = (x: { count: number; ms: number }) => (x.ms / Math.max(1, x.count)).toFixed(1);
  return [
    [`${label} @ ${fmt.int(s.lagRate)} ev/s target`, `${source ? `${source}; ` : ""}achieved ${fmt.int(r.achievedRate)} ev/s of 1-event tx for ${s.lagSeconds} s into '${stream}' (${s.partitions} partitions) through a relay and 1 bridge (batchSize ${s.batchSize}, concurrency ${s.concurrency}) to topic '${stream}'; ${fmt.int(r.samples)} samples after 1 s warm-up; max ${r.maxInFlight} tx in flight`],
    [`${label} commit → Kafka reader p50 / p99 / max`, `${triple([r.p50Ms, r.p99Ms, r.maxMs])} ms (a kafkajs consumer's Date.now() on receipt − the tributary-committed-at header; one machine, one clock; 1 ms resolution)`],
    ...(r.relayShare && r.bridgeShare
      ? [[`${label} split p50 / p99 / max`, `commit → row readable (relay) ${triple(r.relayShare)} ms; readable → appended in Kafka (bridge: fetch, send, ack) ${triple(r.bridgeShare)} ms; appended → reader ${triple(r.readerShare)} ms`]]
      : []),
    [`${label} per second (events/max ms)`, r.perSecond],
    [`${label} bridge`, `peak RSS ${fmt.mb(r.bridgePeakRss)}; CPU ${(r.bridgeCpuSeconds / r.windowSeconds).toFixed(2)} cores (${((r.bridgeCpuSeconds * 1e6) / Math.max(1, r.produced)).toFixed(0)} µs/event); ${fmt.int(t.send.count)} sends of ${(t.send.items / Math.max(1, t.send.count)).toFixed(1)} records, ${each(t.send)} ms each (up to ${t.send.maxConcurrent} at once); ${fmt.int(t.produce.count)} Produce requests, ${each(t.produce)} ms each on the wire, one at a time per producer; ${fmt.int(t.commit.count)} commits ${each(t.commit)} ms each; ${fmt.int(t.fetch.count)} fetches ${each(t.fetch)} ms each${r.duplicates ? `; ${r.duplicates} duplicate records` : ""}`],
    [`${label} CPU during`, `${describeCpu(r.cpu)}; of the bench's: broker ${(r.brokerCpuSeconds / r.windowSeconds).toFixed(2)}, bridge ${(r.bridgeCpuSeconds / r.windowSeconds).toFixed(2)} cores`],
  ];
}

export function printProfile(label: string, summary: ProfileSummary): void {
  process.stdout.write(`\nBridge CPU profile during ${label} of round 1: ${(summary.windowMs / 1000).toFixed(2)} s from startBridge() to the last record in Kafka; categories: a builtin's or node core's time counts for the library or module that called it; functions: self time\n`);
  process.stdout.write(formatTable(["category", "ms", "share"], summary.categories.map((c) => [c.category, fmt.int(c.ms), fmt.pct(c.share)])) + "\n\n");
  process.stdout.write(formatTable(["function", "where", "ms", "share"], summary.functions.map((f) => [f.fn, f.where, fmt.int(f.ms), fmt.pct(f.share)]), [0, 1]) + "\n");
}

