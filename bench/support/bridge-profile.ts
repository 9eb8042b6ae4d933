/**
 * bench:bridge's CPU profile of the bridge child (bundle-profile.ts): the
 * catch-up window, from the startBridge() call until Kafka held every event;
 * a builtin counts for the code that called it.
 */
import { summarizeBundleProfile, type ProfileCategories, type ProfileSummary } from "./bundle-profile.ts";

export { onlyProfile, type ProfileSummary } from "./bundle-profile.ts";

/**
 * Ordered: the first matching rule names a frame's category (module path,
 * function). A sample counts for the category of the deepest frame on its
 * stack that is one of ours or a library's ("owned"), so Buffer writes under
 * kafkajs's encoder count as kafkajs and JSON.parse under postgres.js as
 * postgres.js; only what no such frame called stays node core / builtins.
 */
const CATEGORIES: ProfileCategories = [
  ["idle: waiting on sockets (database, Kafka)", (_m, f) => f === "(idle)"],
  ["garbage collection", (_m, f) => f === "(garbage collector)"],
  ["V8/native, unattributed (program)", (_m, f) => f === "(program)"],
  ["postgres.js (protocol; rows: raw column bytes)", (m) => m.includes("node_modules/postgres/"), "owned"],
  ["kafkajs record encoding (record batch, varints, crc32c, Buffer writes)", (m) => m.includes("node_modules/kafkajs/src/protocol/"), "owned"],
  ["kafkajs producer, network, other", (m) => m.includes("node_modules/kafkajs/"), "owned"],
  ["effect runtime", (m) => m.includes("node_modules/effect/"), "owned"],
  ["toKafkaRecord (the event's own headers, commit time)", (m) => m.endsWith("kafka-bridge/src/internal/kafka-record.ts"), "owned"],
  ["kafka-bridge (bridge.ts, topics.ts)", (m) => m.includes("kafka-bridge/src/"), "owned"],
  ["consumer fetch (fetch.ts: rows → batches)", (m) => m.endsWith("consumer/fetch.ts"), "owned"],
  ["consumer (consumer.ts, batch-handler.ts, offsets, membership)", (m) => m.includes("/src/internal/consumer/"), "owned"],
  ["events.ts (toStreamEvent)", (m) => m.endsWith("internal/events.ts"), "owned"],
  ["bench timers (bridge-timing.ts, bridge-child.ts)", (m) => m.includes("bench/support/bridge-"), "owned"],
  ["other node_modules", (m) => m.includes("node_modules/"), "owned"],
  ["node core (streams, sockets, buffers, timers)", (m) => m.startsWith("node:") || /^internal\//.test(m)],
  ["V8 builtins / native", (m) => m === ""],
];

export function summarizeBridgeProfile(profilePath: string, bundlePath: string, windowUs: readonly [number, number], topFunctions = 18): ProfileSummary {
  return summarizeBundleProfile(profilePath, bundlePath, windowUs, CATEGORIES, topFunctions);
}
