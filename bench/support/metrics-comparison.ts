/**
 * Metrics on against metrics off, side by side in one run (issue 14: metrics
 * must cost the hot paths next to nothing, within 3% of throughput). Each
 * round runs the same workload once without and once with metrics, in the
 * order off, on in odd rounds and on, off in even ones (ABBA): a drift of the
 * machine within a round, or a penalty of running second, falls on both sides
 * equally often. The verdict is the median of the rounds' on/off ratios —
 * each ratio compares two runs taken seconds apart, so a round-to-round swing
 * of the machine cancels in it, where it would not in a ratio of the two
 * sides' medians (printed too). A verdict, not an assertion: the benchmark
 * prints FAIL and still exits 0, since one noisy run on a shared machine is
 * not a regression.
 */
import type { ScrapeSummary } from "./metrics-scraper.ts";
import { fmt, formatTable, progress } from "./report-table.ts";
import { median } from "./median.ts";

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

/** `rounds` rounds of `run(false)` and `run(true)`: off first in odd rounds, on first in even ones. */
export async function alternateMetrics(rounds: number, run: (metricsOn: boolean, round: number) => Promise<MetricsSample>): Promise<MetricsRound[]> {
  const results: MetricsRound[] = [];
  for (let round = 1; round <= rounds; round++) {
    const sample = (metricsOn: boolean) => {
      progress(`metrics round ${round} of ${rounds}: ${metricsOn ? "on" : "off"}`);
      return run(metricsOn, round);
    };
    const onFirst = round % 2 === 0;
    const first = await sample(onFirst);
    const second = await sample(!onFirst);
    const [off, on] = onFirst ? [second, first] : [first, second];
    progress(`metrics round ${round}: off ${fmt.int(off.rate)} ev/s, on ${fmt.int(on.rate)} ev/s (${(on.rate / off.rate).toFixed(3)})`);
    results.push({ off, on });
  }
  return results;
}

const scrapeCell = (s: ScrapeSummary | null) =>
  s === null ? "" : `${s.scrapes}${s.failures ? ` (+${s.failures} failed)` : ""}, ${fmt.int(s.lastBytes / 1024)} kB, max ${s.maxMs.toFixed(0)} ms`;

/** Per round and medians: events/s and CPU µs/event off and on, their ratios (the median row: of the rounds' ratios), and the verdict against the budget. */
export function formatMetricsComparison(title: string, rounds: readonly MetricsRound[], notes: readonly string[]): string {
  const rows = rounds.map((r, i) => [
    `${i + 1} (${i % 2 === 0 ? "off, on" : "on, off"})`,
    fmt.int(r.off.rate), fmt.int(r.on.rate), (r.on.rate / r.off.rate).toFixed(3),
    r.off.cpuUsPerEvent.toFixed(2), r.on.cpuUsPerEvent.toFixed(2), (r.on.cpuUsPerEvent / r.off.cpuUsPerEvent).toFixed(3),
    scrapeCell(r.on.scrapes),
  ]);
  const off = { rate: median(rounds.map((r) => r.off.rate)), cpu: median(rounds.map((r) => r.off.cpuUsPerEvent)) };
  const on = { rate: median(rounds.map((r) => r.on.rate)), cpu: median(rounds.map((r) => r.on.cpuUsPerEvent)) };
  const ratio = median(rounds.map((r) => r.on.rate / r.off.rate));
  const cpuRatio = median(rounds.map((r) => r.on.cpuUsPerEvent / r.off.cpuUsPerEvent));
  rows.push(["median", fmt.int(off.rate), fmt.int(on.rate), ratio.toFixed(3), off.cpu.toFixed(2), on.cpu.toFixed(2), cpuRatio.toFixed(3), ""]);
  const verdict =
    `${ratio >= METRICS_BUDGET ? "PASS" : "FAIL"}: metrics on makes ${ratio.toFixed(3)} of metrics off's events/s ` +
    `(median of ${rounds.length} rounds' on/off; budget ≥ ${METRICS_BUDGET}; the sides' medians give ${(on.rate / off.rate).toFixed(3)})`;
  const table = formatTable(["round", "off ev/s", "on ev/s", "on/off", "off CPU µs/ev", "on CPU µs/ev", "on/off CPU", "scrapes (on)"], rows, [0, 7]);
  return `\n${title}\n${table}\n${verdict}\n${notes.map((n) => `  ${n}\n`).join("")}`;
}
