/**
 * The Kafka reader of bench:bridge (c) in its own process (bundled with
 * esbuild by bridge-process.ts), so the benchmark's producer, pacing
 * thousands of appends a second, does not delay when a record is seen.
 * Configured by env: BROKERS (comma-separated), TOPIC.
 *
 * A kafkajs consumer of a group of its own reads TOPIC from the beginning
 * (defaults: minBytes 1, so a fetch returns as soon as a record is there).
 * stdout lines: "joined" once it is in its group, then every 20 ms
 * "records id|partition|offset|committedMs|appendedMs|receivedMs;…", where
 * partition and offset are the stream's (tributary- headers), committedMs is
 * the tributary-committed-at header, appendedMs the record's timestamp (the
 * broker's append time on a LogAppendTime topic) and receivedMs Date.now()
 * when eachBatch got it: one machine, one clock.
 */
import { randomBytes } from "node:crypto";
import kafkajs from "kafkajs";

const { Kafka, logLevel } = kafkajs;
const print = (line: string) => process.stdout.write(line + "\n");

const reader = new Kafka({ clientId: "bench-bridge-reader", brokers: process.env.BROKERS!.split(","), logLevel: logLevel.NOTHING })
  .consumer({ groupId: `bench-bridge-reader-${randomBytes(4).toString("hex")}` });
let pending: string[] = [];
setInterval(() => {
  if (pending.length === 0) return;
  print(`records ${pending.join(";")}`);
  pending = [];
}, 20).unref();

reader.on(reader.events.GROUP_JOIN, () => print("joined"));
await reader.connect();
await reader.subscribe({ topics: [process.env.TOPIC!], fromBeginning: true });
await reader.run({
  eachBatch: async ({ batch }) => {
    const receivedMs = Date.now();
    for (const m of batch.messages) {
      const header = (name: string) => String(m.headers?.[name] ?? "");
      pending.push(`${header("tributary-id")}|${header("tributary-partition")}|${header("tributary-offset")}|${Date.parse(header("tributary-committed-at"))}|${m.timestamp}|${receivedMs}`);
    }
  },
});

const stop = () => void reader.disconnect().finally(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
