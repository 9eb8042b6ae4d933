/**
 * Summarizes the catch-up member's V8 .cpuprofile (node --cpu-prof) by self
 * time, per category (waiting on the database, postgres.js, Effect, each
 * consumer module, GC, …) and per function. The child is an esbuild bundle,
 * so a sample's source module is found from the bundle's own module markers
 * (esbuild writes a "// path/to/module.ts" line before each module's code).
 * Only the catch-up window counts: from the consumer() call to the last
 * event handled, as the child reported it (process.hrtime and the profile's
 * timestamps share the monotonic clock).
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Ordered: the first matching rule names the category of a sample's leaf frame (module path, function). */
const CATEGORIES: ReadonlyArray<readonly [string, (module: string, fn: string) => boolean]> = [
  ["idle: waiting on sockets (database)", (_m, f) => f === "(idle)"],
  ["garbage collection", (_m, f) => f === "(garbage collector)"],
  ["V8/native, unattributed (program)", (_m, f) => f === "(program)"],
  ["postgres.js (protocol, row and jsonb/timestamptz parsing)", (m) => m.startsWith("node_modules/postgres/")],
  ["effect runtime (per-event attempt/retry in batch-handler)", (m) => m.startsWith("node_modules/effect/")],
  ["consumer fetch (fetch.ts: rows → batches)", (m) => m.endsWith("consumer/fetch.ts")],
  ["consumer batch-handler.ts", (m) => m.endsWith("consumer/batch-handler.ts")],
  ["consumer.ts (fetch rounds, scheduling)", (m) => m.endsWith("consumer/consumer.ts")],
  ["offsets.ts / membership.ts (commits, heartbeats)", (m) => /consumer\/(offsets|membership|assignor)\.ts$/.test(m)],
  ["events.ts (toStreamEvent)", (m) => m.endsWith("internal/events.ts")],
  ["bench handler (count + density check)", (m) => m.startsWith("bench/")],
  ["other node_modules", (m) => m.startsWith("node_modules/")],
  ["node core (streams, sockets, buffers, timers)", (m) => m.startsWith("node:") || /^internal\//.test(m)],
  ["V8 builtins / native (no script)", (m) => m === ""],
];

export interface ProfileSummary {
  readonly windowMs: number;
  readonly categories: ReadonlyArray<{ category: string; ms: number; share: number }>;
  readonly functions: ReadonlyArray<{ fn: string; where: string; ms: number; share: number }>;
}

/** Bundle line (0-based) → the source module it came from, from esbuild's "// module" markers. */
function moduleMap(lines: readonly string[]): (line: number) => string {
  const starts: Array<[number, string]> = [];
  lines.forEach((text, line) => {
    const marker = /^\/\/ ((?:node_modules|packages|services|bench|test)\/\S+\.[cm]?[jt]s)$/.exec(text);
    if (marker) starts.push([line, marker[1]!]);
  });
  return (line) => {
    let lo = 0;
    let hi = starts.length - 1;
    let found = "";
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]![0] <= line) {
        found = starts[mid]![1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
}

export function summarizeConsumerProfile(profilePath: string, bundlePath: string, windowUs: readonly [number, number], topFunctions = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(profilePath, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const bundleLines = readFileSync(bundlePath, "utf8").split("\n");
  const moduleOf = moduleMap(bundleLines);
  // esbuild reprints the code, so a bundle line is not a source line: show the bundle's text of the function's first line instead.
  const snippet = (line: number) => {
    const text = (bundleLines[line] ?? "").trim();
    return text.length > 48 ? `${text.slice(0, 47)}…` : text;
  };
  const bundleUrl = `file://${bundlePath}`;
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, { fn: string; where: string; us: number }>();
  let windowTotal = 0;
  // Sample i happened at startTime + sum(timeDeltas[0..i]); it is attributed the interval to the next sample.
  let t = profile.startTime;
  const times = profile.timeDeltas.map((delta) => (t += delta));
  for (let i = 0; i + 1 < profile.samples.length; i++) {
    if (times[i]! < windowUs[0] || times[i]! >= windowUs[1]) continue;
    const us = times[i + 1]! - times[i]!;
    const { functionName, url, lineNumber } = byId.get(profile.samples[i]!)!.callFrame;
    const module = url === bundleUrl ? moduleOf(lineNumber) : url.replace(/^file:\/\//, "");
    const fn = functionName || "(anonymous)";
    const category = CATEGORIES.find(([, matches]) => matches(module, fn))?.[0] ?? "other";
    windowTotal += us;
    byCategory.set(category, (byCategory.get(category) ?? 0) + us);
    const where = module ? `${shortModule(module)}${url === bundleUrl ? `: ${snippet(lineNumber)}` : `:${lineNumber + 1}`}` : "";
    const key = `${fn}@${where}`;
    const entry = byFunction.get(key) ?? { fn, where, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  if (windowTotal === 0) throw new Error(`no samples of ${profilePath} fall in the catch-up window`);
  const share = (us: number) => us / windowTotal;
  return {
    windowMs: windowTotal / 1000,
    categories: [...byCategory].map(([category, us]) => ({ category, ms: us / 1000, share: share(us) })).sort((a, b) => b.ms - a.ms),
    functions: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topFunctions)
      .map((f) => ({ fn: f.fn, where: f.where, ms: f.us / 1000, share: share(f.us) })),
  };
}

const shortModule = (module: string) => module.replace(/^node_modules\//, "").replace(/^packages\/client\/src\/internal\//, "client/");
