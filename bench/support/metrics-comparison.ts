/**
 * Metrics on against metrics off, side by side in one run (issue 14: metrics
 * must cost the hot paths next to nothing, within 3% of throughput). Rounds
 * alternate off, on, off, on… on the same workload, so the machine's drift
 * falls on both sides; the verdict compares the medians. A verdict, not an
 * assertion: the benchmark prints FAIL and still exits 0, since one noisy
 * run on a shared machine is not a regression.
 */
import type { ScrapeSummary } from "./metrics-scraper.ts";
import { fmt, formatTable, progress } from "./report-table.ts";

/** Throughput must stay at or above this share of metrics off. */
export const METRICS_BUDGET = 0.97;

export interface MetricsSample {
  readonly rate: number;
  /** CPU µs per event of the processes doing the work. */
  readonly cpuUsPerEvent: number;
  /** The scrapes during the run (metrics on only). */
  readonly scrapes: ScrapeSummary | null;
}

export interface MetricsRound {
  readonly off: MetricsSample;
  readonly on: MetricsSample;
}

/** `rounds` rounds of `run(false)` then `run(true)`. */
export async function alternateMetrics(rounds: number, run: (metricsOn: boolean, round: number) => Promise<MetricsSample>): Promise<MetricsRound[]> {
  const results: MetricsRound[] = [];
  for (let round = 1; round <= rounds; round++) {
    progress(`metrics round ${round} of ${rounds}: off`);
    const off = await run(false, round);
    progress(`metrics round ${round} of ${rounds}: on`);
    const on = await run(true, round);
    progress(`metrics round ${round}: off ${fmt.int(off.rate)} ev/s, on ${fmt.int(on.rate)} ev/s (${(on.rate / off.rate).toFixed(3)})`);
    results.push({ off, on });
  }
  return results;
}

const median = (xs: readonly number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const scrapeCell = (s: ScrapeSummary | null) =>
  s === null ? "" : `${s.scrapes}${s.failures ? ` (+${s.failures} failed)` : ""}, ${fmt.int(s.lastBytes / 1024)} kB, max ${s.maxMs.toFixed(0)} ms`;

/** Per round and medians: events/s and CPU µs/event off and on, their ratios, and the verdict against the budget. */
export function formatMetricsComparison(title: string, rounds: readonly MetricsRound[], notes: readonly string[]): string {
  const rows = rounds.map((r, i) => [
    String(i + 1),
    fmt.int(r.off.rate), fmt.int(r.on.rate), (r.on.rate / r.off.rate).toFixed(3),
    r.off.cpuUsPerEvent.toFixed(2), r.on.cpuUsPerEvent.toFixed(2), (r.on.cpuUsPerEvent / r.off.cpuUsPerEvent).toFixed(3),
    scrapeCell(r.on.scrapes),
  ]);
  const off = { rate: median(rounds.map((r) => r.off.rate)), cpu: median(rounds.map((r) => r.off.cpuUsPerEvent)) };
  const on = { rate: median(rounds.map((r) => r.on.rate)), cpu: median(rounds.map((r) => r.on.cpuUsPerEvent)) };
  const ratio = on.rate / off.rate;
  rows.push(["median", fmt.int(off.rate), fmt.int(on.rate), ratio.toFixed(3), off.cpu.toFixed(2), on.cpu.toFixed(2), (on.cpu / off.cpu).toFixed(3), ""]);
  const verdict = `${ratio >= METRICS_BUDGET ? "PASS" : "FAIL"}: metrics on makes ${ratio.toFixed(3)} of metrics off's events/s (medians of ${rounds.length} rounds; budget ≥ ${METRICS_BUDGET})`;
  const table = formatTable(["round", "off ev/s", "on ev/s", "on/off", "off CPU µs/ev", "on CPU µs/ev", "on/off CPU", "scrapes (on)"], rows, [0, 7]);
  return `\n${title}\n${table}\n${verdict}\n${notes.map((n) => `  ${n}\n`).join("")}`;
}
