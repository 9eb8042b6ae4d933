/**
 * One Kafka bridge in its own process, for bench:bridge (bundled with
 * esbuild by bridge-process.ts, with bridge-timing.ts standing in for the
 * bridge's `postgres` and `kafkajs`). Configured by env:
 *
 *   DATABASE_URL, STREAMS (comma-separated), BROKERS (comma-separated),
 *   GROUP, BATCH_SIZE, CONCURRENCY, TOPIC_PREFIX (topic = prefix + stream),
 *   PRODUCERS (optional: the bridge's default)
 *
 * The topics exist (the benchmark creates them with the streams' partition
 * counts), so the bridge runs without --create-topics, as a user would.
 *
 * stdout lines: "start {epochMs, hrUs}" just before startBridge() is called,
 * "ready {epochMs}" when it forwards, "rss <bytes>" every 200 ms,
 * "stats {…}" (bridge-timing.ts's figures) in answer to a "stats" line on
 * stdin, "error <message>" on a fatal error. hrUs is process.hrtime in µs:
 * CLOCK_MONOTONIC, the clock of the V8 profile's timestamps, shared by every
 * process of the machine.
 */
import { createInterface } from "node:readline";
import { logLevel } from "kafkajs";
import { startBridge } from "@tributary/kafka-bridge";
import { timings } from "./bridge-timing.ts";

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`bridge child: ${name} is not set`);
  return value;
};
const print = (line: string) => process.stdout.write(line + "\n");

setInterval(() => print(`rss ${process.memoryUsage.rss()}`), 200).unref();
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stats") print(`stats ${JSON.stringify(timings)}`);
});

print(`start ${JSON.stringify({ epochMs: Date.now(), hrUs: Number(process.hrtime.bigint() / 1000n) })}`);
const bridge = startBridge({
  databaseUrl: env("DATABASE_URL"),
  streams: env("STREAMS").split(","),
  kafka: { brokers: env("BROKERS").split(","), clientId: `bench-bridge-${process.pid}`, logLevel: logLevel.NOTHING },
  group: env("GROUP"),
  topicPrefix: process.env.TOPIC_PREFIX ?? "",
  batchSize: Number(env("BATCH_SIZE")),
  concurrency: Number(env("CONCURRENCY")),
  ...(process.env.PRODUCERS ? { producers: Number(process.env.PRODUCERS) } : {}),
  log: (m) => process.stderr.write(`[bench bridge ${process.pid}] ${m}\n`),
});
bridge.ready.then(
  () => print(`ready ${JSON.stringify({ epochMs: Date.now() })}`),
  () => undefined,
);

const stop = () => void bridge.stop().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
bridge.done.catch((error: unknown) => {
  print(`error fatal: ${(error as Error)?.message ?? error}`);
  process.exit(3);
});
