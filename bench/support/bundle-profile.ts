/**
 * Summarizes a benchmark child's V8 .cpuprofile (node --cpu-prof) per
 * category (the caller's rules: waiting on sockets, postgres.js, GC, …) and
 * per function (self time). The child is an esbuild bundle (testkit's
 * ChildBundle): a sample's source module is found from the bundle's own
 * module markers (esbuild writes a "// path/to/module.ts" line before each
 * module's code, relative to the repository, so a copy elsewhere reads
 * "../../tmp/…").
 * Only the given window counts (process.hrtime and the profile's timestamps
 * are both CLOCK_MONOTONIC, shared by the machine's processes).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/**
 * Ordered: the first matching rule names a frame's category (module path,
 * function). A sample counts for the category of the deepest frame on its
 * stack whose rule is marked "owned" (one of ours or a library's), so Buffer
 * writes under kafkajs's encoder count as kafkajs and JSON.parse under
 * postgres.js as postgres.js; without such a frame, its leaf frame's.
 */
export type ProfileCategories = ReadonlyArray<readonly [string, (module: string, fn: string) => boolean, "owned"?]>;

export interface ProfileSummary {
  readonly windowMs: number;
  readonly categories: ReadonlyArray<{ category: string; ms: number; share: number }>;
  readonly functions: ReadonlyArray<{ fn: string; where: string; ms: number; share: number }>;
}

/** Bundle line (0-based) → the source module it came from, from esbuild's "// module" markers. */
export function moduleMap(lines: readonly string[]): (line: number) => string {
  const starts: Array<[number, string]> = [];
  lines.forEach((text, line) => {
    const marker = /^\/\/ ((?:\.\.\/)*[\w@.-]+\/\S+\.[cm]?[jt]s)$/.exec(text);
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

/** The one .cpuprofile the child wrote into `dir`. */
export function onlyProfile(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length !== 1) throw new Error(`expected one .cpuprofile in ${dir}, found ${files.length}: did the child exit cleanly?`);
  return join(dir, files[0]!);
}

export function summarizeBundleProfile(
  profilePath: string,
  bundlePath: string,
  windowUs: readonly [number, number],
  categories: ProfileCategories,
  topFunctions: number,
): ProfileSummary {
  const profile = JSON.parse(readFileSync(profilePath, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  const bundleLines = readFileSync(bundlePath, "utf8").split("\n");
  const moduleOf = moduleMap(bundleLines);
  // esbuild reprints the code, so a bundle line is not a source line: show the bundle's text of the function's first line instead.
  const snippet = (line: number) => {
    const text = (bundleLines[line] ?? "").trim();
    return text.length > 48 ? `${text.slice(0, 47)}…` : text;
  };
  const bundleUrl = `file://${bundlePath}`;
  const moduleOfFrame = ({ url, lineNumber }: ProfileNode["callFrame"]) => (url === bundleUrl ? moduleOf(lineNumber) : url.replace(/^file:\/\//, ""));
  const ruleOf = (node: ProfileNode) => categories.find(([, matches]) => matches(moduleOfFrame(node.callFrame), node.callFrame.functionName || "(anonymous)"));
  const categoryCache = new Map<number, string>();
  /** The category of the deepest owned frame on the stack of `id`, else of the leaf. */
  const categoryOf = (id: number): string => {
    const cached = categoryCache.get(id);
    if (cached) return cached;
    const leaf = ruleOf(byId.get(id)!);
    let category = leaf?.[0] ?? "other";
    if (leaf?.[2] !== "owned" && !["(idle)", "(garbage collector)", "(program)"].includes(byId.get(id)!.callFrame.functionName)) {
      for (let up = parentOf.get(id); up !== undefined; up = parentOf.get(up)) {
        const rule = ruleOf(byId.get(up)!);
        if (rule?.[2] === "owned") {
          category = rule[0];
          break;
        }
      }
    }
    categoryCache.set(id, category);
    return category;
  };
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
    const module = moduleOfFrame({ functionName, url, lineNumber });
    const fn = functionName || "(anonymous)";
    const category = categoryOf(profile.samples[i]!);
    windowTotal += us;
    byCategory.set(category, (byCategory.get(category) ?? 0) + us);
    const where = module ? `${shortModule(module)}${url === bundleUrl ? `: ${snippet(lineNumber)}` : `:${lineNumber + 1}`}` : "";
    const key = `${fn}@${where}`;
    const entry = byFunction.get(key) ?? { fn, where, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  if (windowTotal === 0) throw new Error(`no samples of ${profilePath} fall in the measured window`);
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

const shortModule = (module: string) =>
  module
    .replace(/^.*node_modules\//, "")
    .replace(/^.*packages\/client\/src\/internal\//, "client/")
    .replace(/^.*kafka-bridge\/src\/internal\//, "bridge/");
