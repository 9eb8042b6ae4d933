/**
 * A Kafka bridge in its own process, for kill -9 tests. Configured by env:
 *   DATABASE_URL, STREAMS (comma-separated), BROKERS (comma-separated),
 *   BATCH_SIZE, SESSION_TIMEOUT_MS, TOPIC_PREFIX
 * Prints "forwarding" on stdout once it is a member of the bridge group.
 */
import { logLevel } from "kafkajs";
import { startBridge } from "@tributary/kafka-bridge";

const bridge = startBridge({
  databaseUrl: process.env.DATABASE_URL!,
  streams: process.env.STREAMS!.split(","),
  kafka: { brokers: process.env.BROKERS!.split(","), clientId: `bridge-child-${process.pid}`, logLevel: logLevel.NOTHING, retry: { initialRetryTime: 200, retries: 3 } },
  createTopics: true,
  topicPrefix: process.env.TOPIC_PREFIX ?? "",
  batchSize: Number(process.env.BATCH_SIZE ?? 500),
  sessionTimeoutMs: Number(process.env.SESSION_TIMEOUT_MS ?? 2_000),
  log: (m) => process.stderr.write(`[bridge-child ${process.pid}] ${m}\n`),
});
bridge.ready.then(() => process.stdout.write("forwarding\n"), () => undefined);

const stop = () => void bridge.stop().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
bridge.done.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`[bridge-child] fatal: ${(error as Error)?.message ?? error}\n`);
    process.exit(3);
  },
);
