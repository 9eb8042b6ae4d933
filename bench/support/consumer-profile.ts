/**
 * bench:consumer's CPU profile of the catch-up member (bundle-profile.ts):
 * from the consumer() call to the last event handled, as the child reported
 * it; each sample counts for its leaf frame.
 */
import { summarizeBundleProfile, type ProfileCategories, type ProfileSummary } from "./bundle-profile.ts";

export { onlyProfile, type ProfileSummary } from "./bundle-profile.ts";

/** Ordered: the first matching rule names the category of a sample's leaf frame (module path, function). */
const CATEGORIES: ProfileCategories = [
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

export function summarizeConsumerProfile(profilePath: string, bundlePath: string, windowUs: readonly [number, number], topFunctions = 15): ProfileSummary {
  return summarizeBundleProfile(profilePath, bundlePath, windowUs, CATEGORIES, topFunctions);
}
