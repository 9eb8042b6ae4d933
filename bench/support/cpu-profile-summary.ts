/**
 * Summarizes a V8 .cpuprofile (node --cpu-prof) by self time: per category
 * (what kind of work: decoding, batching, postgres.js, waiting on the
 * database, GC, …) and per function. Only the streaming window counts: from
 * the first to the last sample in the replication code, so start-up
 * (connecting) and shutdown are left out. The relay child is an esbuild
 * bundle (relay-process.ts): with `bundle`, a frame of the bundle is named by
 * the source module its line falls in (esbuild's "// module" markers), so the
 * categories below match source paths as they would for unbundled code.
 *
 * With `builtinsToCaller`, a sample whose leaf is a V8 builtin or node core
 * (JSON.stringify, a RegExp, Buffer#toString) counts, in the category table,
 * for the nearest frame above it that is one of ours or a library's: what
 * the code asked for. The function table stays the leaf's self time.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { moduleMap } from "./bundle-profile.ts";
import { fmt, formatTable } from "./report-table.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** What metrics on adds to a process (bench:relay's metrics comparison): the registry, its HTTP endpoint, our metrics modules. */
export const METRICS_CATEGORY = "metrics: prom-client, /metrics over HTTP, relay and consumer metrics";
const METRICS_CODE = /node_modules\/(prom-client|tdigest|bintrees)\/|metrics-endpoint|relay-metrics|consumer-metrics|^node:_http_/;

/** Ordered: the first matching rule names the category of a sample's leaf frame. */
const CATEGORIES: ReadonlyArray<readonly [string, (url: string, fn: string) => boolean]> = [
  ["idle: waiting on sockets (database)", (_u, f) => f === "(idle)"],
  ["garbage collection", (_u, f) => f === "(garbage collector)"],
  ["V8/native, unattributed (program)", (_u, f) => f === "(program)"],
  [METRICS_CATEGORY, (u) => METRICS_CODE.test(u)],
  ["pgoutput/wal2json parse (pg-logical-replication)", (u) => /pg-logical-replication\/dist\/output-plugins/.test(u)],
  ["replication flow control (pg-logical-replication service)", (u) => /pg-logical-replication\/dist\/logical-replication-service/.test(u)],
  ["eventemitter2 (emitAsync per message)", (u) => /eventemitter2/.test(u)],
  ["pg / pg-protocol (replication socket, CopyData)", (u) => /node_modules\/(pg|pg-protocol|pg-types|pg-pool|pgpass)\//.test(u)],
  ["postgres.js (query serialization, protocol)", (u) => /node_modules\/postgres\//.test(u)],
  ["effect runtime", (u) => /node_modules\/effect\//.test(u)],
  ["event message parse (packages/core event-message)", (u) => /packages\/core\/src\/internal\/event-message/.test(u)],
  ["LSN parse/format (packages/wal lsn)", (u) => /packages\/wal\/src\/internal\/lsn/.test(u)],
  ["row change decode (packages/wal pgoutput-changes, wal2json-changes)", (u) => /packages\/wal\/src\/internal\/(pgoutput|wal2json)-changes/.test(u)],
  ["decoder mapping + source (packages/wal)", (u) => /packages\/wal\/src\//.test(u)],
  ["murmur2 partitioner (packages/core)", (u) => /packages\/core\/src\/internal\/partitioner/.test(u)],
  ["change events: Debezium envelope (relay cdc/change-event)", (u) => /services\/relay\/src\/internal\/cdc\/change-event/.test(u)],
  ["column values to JSON (relay cdc/column-json, type-catalog)", (u) => /services\/relay\/src\/internal\/cdc\/(column-json|type-catalog)/.test(u)],
  ["capture lookup, snapshot chunks (relay cdc, other)", (u) => /services\/relay\/src\/internal\/cdc\//.test(u)],
  ["relay state: numbering, batching (relay-state)", (u) => /services\/relay\/src\/internal\/relay-state/.test(u)],
  ["relay pump + stream writer", (u) => /services\/relay\/src\//.test(u)],
  ["node core (streams, sockets, buffers, timers)", (u) => u.startsWith("node:") || /^internal\//.test(u)],
  ["V8 builtins / native (no script)", (u) => u === ""],
];

export interface ProfileSummary {
  readonly windowMs: number;
  readonly categories: ReadonlyArray<{ category: string; ms: number; share: number }>;
  readonly functions: ReadonlyArray<{ fn: string; where: string; category: string; ms: number; share: number }>;
}

function categoryOf(url: string, fn: string): string {
  return CATEGORIES.find(([, matches]) => matches(url, fn))?.[0] ?? "other";
}

const inStreamingCode = (url: string) => /pg-logical-replication|packages\/wal\/src/.test(url);

/** Leaf categories that stand for what called them when `builtinsToCaller` is on. */
const CALLEE_CATEGORIES = new Set(["node core (streams, sockets, buffers, timers)", "V8 builtins / native (no script)", "other"]);

export interface SummaryOptions {
  readonly topFunctions?: number;
  readonly builtinsToCaller?: boolean;
  /** The bundle the profiled process ran (its frames are renamed to their source modules). */
  readonly bundle?: string;
}

export function summarizeCpuProfile(path: string, { topFunctions = 15, builtinsToCaller = false, bundle }: SummaryOptions = {}): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  if (bundle) {
    const moduleOf = moduleMap(readFileSync(bundle, "utf8").split("\n"));
    const bundleUrl = `file://${bundle}`;
    for (const { callFrame } of profile.nodes) {
      if (callFrame.url !== bundleUrl) continue;
      // A bundle line is esbuild's reprint, not a source line: the module alone names the frame.
      callFrame.url = `bundle:///${moduleOf(callFrame.lineNumber)}`;
      callFrame.lineNumber = -1;
    }
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  const sampleCategory = (id: number): string => {
    const { url, functionName } = byId.get(id)!.callFrame;
    const leaf = categoryOf(url, functionName || "(anonymous)");
    if (!builtinsToCaller || !CALLEE_CATEGORIES.has(leaf) || functionName.startsWith("(")) return leaf;
    for (let up = parentOf.get(id); up !== undefined; up = parentOf.get(up)) {
      const frame = byId.get(up)!.callFrame;
      const category = categoryOf(frame.url, frame.functionName || "(anonymous)");
      if (!CALLEE_CATEGORIES.has(category) && !frame.functionName.startsWith("(")) return category;
    }
    return leaf;
  };
  // Sample i happened at sum(timeDeltas[0..i]); it is attributed the interval to the next sample.
  const times: number[] = [];
  let t = 0;
  for (const delta of profile.timeDeltas) times.push((t += delta));
  let first = -1;
  let last = -1;
  profile.samples.forEach((id, i) => {
    if (inStreamingCode(byId.get(id)!.callFrame.url)) {
      if (first < 0) first = i;
      last = i;
    }
  });
  if (first < 0) throw new Error(`no replication samples in ${path}`);

  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, { fn: string; where: string; category: string; us: number }>();
  let windowUs = 0;
  for (let i = first; i < last; i++) {
    const node = byId.get(profile.samples[i]!)!;
    const us = times[i + 1]! - times[i]!;
    windowUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const fn = functionName || "(anonymous)";
    const category = categoryOf(url, fn);
    const counted = sampleCategory(profile.samples[i]!);
    byCategory.set(counted, (byCategory.get(counted) ?? 0) + us);
    // Line 1 (a bundled frame's, or a one-line transpiled source's) says nothing, so it is left out.
    const where = url ? `${shortUrl(url)}${lineNumber > 0 ? `:${lineNumber + 1}` : ""}` : "";
    const key = `${fn}@${where}`;
    const entry = byFunction.get(key) ?? { fn, where, category, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  const share = (us: number) => us / windowUs;
  return {
    windowMs: windowUs / 1000,
    categories: [...byCategory].map(([category, us]) => ({ category, ms: us / 1000, share: share(us) })).sort((a, b) => b.ms - a.ms),
    functions: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topFunctions)
      .map((f) => ({ fn: f.fn, where: f.where, category: f.category, ms: f.us / 1000, share: share(f.us) })),
  };
}

function shortUrl(url: string): string {
  const path = url.replace(/^(file|bundle):\/\/\/?/, "");
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) return path.slice(nm + "node_modules/".length);
  const repo = path.search(/\/(packages|services|test|bench)\//);
  return repo >= 0 ? path.slice(repo + 1) : path;
}

/** The main thread's profile in `dir`: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile, thread 0 (a loader would run in a worker). */
export function mainThreadProfile(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile") && f.split(".")[4] === "0").sort();
  if (files.length === 0) throw new Error(`no main-thread .cpuprofile in ${dir}: did the relay child exit cleanly?`);
  return join(dir, files.at(-1)!);
}

/** The summary as two tables (categories, then functions) under `title`. */
export function formatProfile(title: string, summary: ProfileSummary, dir: string): string {
  return (
    `\n${title}: ${(summary.windowMs / 1000).toFixed(2)} s streaming window, self time\n` +
    formatTable(["category", "ms", "share"], summary.categories.map((c) => [c.category, fmt.int(c.ms), fmt.pct(c.share)])) + "\n\n" +
    formatTable(["function", "where", "ms", "share"], summary.functions.map((f) => [f.fn, f.where, fmt.int(f.ms), fmt.pct(f.share)]), [0, 1]) + "\n" +
    `(profile kept in ${dir})\n`
  );
}

/**
 * Metrics off against on, one profile each: self time per category side by
 * side (each side's share of its own streaming window), then what the
 * metrics code took in the on side, with its busiest functions.
 */
export function formatMetricsProfiles(off: ProfileSummary, on: ProfileSummary, dir: string): string {
  const categories = [...new Set([...on.categories, ...off.categories].map((c) => c.category))];
  const of = (s: ProfileSummary, category: string) => s.categories.find((c) => c.category === category) ?? { ms: 0, share: 0 };
  const rows = categories.map((category) => {
    const [a, b] = [of(off, category), of(on, category)];
    return [category, fmt.int(a.ms), fmt.pct(a.share), fmt.int(b.ms), fmt.pct(b.share)];
  });
  rows.push(["streaming window", fmt.int(off.windowMs), "", fmt.int(on.windowMs), ""]);
  const metrics = of(on, METRICS_CATEGORY);
  const busiest = on.functions.filter((f) => f.category === METRICS_CATEGORY);
  return (
    `\nRelay CPU profiles of the metrics comparison's round 1 (self time; builtins counted for their caller)\n` +
    formatTable(["category", "off ms", "off share", "on ms", "on share"], rows, [0]) + "\n" +
    `metrics code in the on run: ${fmt.int(metrics.ms)} ms, ${fmt.pct(metrics.share)} of its ${(on.windowMs / 1000).toFixed(2)} s streaming window` +
    (busiest.length ? `; busiest: ${busiest.slice(0, 5).map((f) => `${f.fn} (${f.where}) ${f.ms.toFixed(1)} ms`).join(", ")}` : "") + "\n" +
    `(profiles kept in ${dir})\n`
  );
}
