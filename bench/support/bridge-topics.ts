/**
 * The Kafka side of bench:bridge: topics made like a user would (the
 * stream's partition count, so stream partition p → Kafka partition p), and
 * how many records Kafka holds, read from the partitions' end offsets (the
 * high watermark: with acks = all it moves only past acknowledged records).
 */
import kafkajs, { type Admin, type ITopicConfig } from "kafkajs";

const { Kafka, logLevel } = kafkajs;

export function kafkaAdmin(brokers: readonly string[]): Admin {
  return new Kafka({ clientId: "bench-bridge-driver", brokers: [...brokers], logLevel: logLevel.NOTHING }).admin();
}

export async function createTopics(admin: Admin, topics: readonly string[], partitions: number, configEntries: ITopicConfig["configEntries"] = []): Promise<void> {
  // kafkajs's waitForLeaders gives up on UNKNOWN_TOPIC_OR_PARTITION while the broker's metadata catches up: endOffsets waits instead.
  const created = await admin.createTopics({
    waitForLeaders: false,
    topics: topics.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1, configEntries })),
  });
  if (!created) throw new Error(`Kafka topics ${topics.join(", ")} already exist: the benchmark needs fresh ones`);
  await endOffsets(admin, topics); // every partition has its leader (retried until it answers) before anything is timed
}

/**
 * Per topic, the end offset of each partition (index = partition). A topic
 * created a moment ago may still answer "not the leader" (its leadership
 * reaches the metadata cache just after createTopics returns): retried.
 */
export async function endOffsets(admin: Admin, topics: readonly string[]): Promise<Map<string, number[]>> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = new Map<string, number[]>();
      await Promise.all(
        topics.map(async (topic) => {
          const offsets = await admin.fetchTopicOffsets(topic);
          const ends: number[] = [];
          for (const o of offsets) ends[o.partition] = Number(o.high);
          result.set(topic, ends);
        }),
      );
      return result;
    } catch (error) {
      if (attempt >= 50 || (error as { retriable?: boolean })?.retriable !== true) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export const totalRecords = (ends: Map<string, number[]>): number =>
  [...ends.values()].reduce((sum, partitions) => sum + partitions.reduce((a, b) => a + b, 0), 0);

/**
 * Polls the topics' end offsets until they hold `expected` records; resolves
 * with Date.now() of the first poll that showed them. Each poll is a few
 * requests to the broker and some CPU of this process, both shared with what
 * is measured: every 200 ms until 90% are in, then every 20 ms (the figure
 * is late by at most that).
 */
export async function waitForRecords(
  admin: Admin,
  topics: readonly string[],
  expected: number,
  options: { timeoutMs: number; onProgress?: (records: number) => void },
): Promise<number> {
  const deadline = Date.now() + options.timeoutMs;
  let lastReport = Date.now();
  for (;;) {
    const records = totalRecords(await endOffsets(admin, topics));
    const now = Date.now();
    if (records >= expected) return now;
    if (now > deadline) throw new Error(`Kafka holds ${records} of ${expected} records in ${topics.join(", ")} after ${options.timeoutMs / 1000} s`);
    if (now - lastReport >= 2000) {
      options.onProgress?.(records);
      lastReport = now;
    }
    await new Promise((r) => setTimeout(r, records >= 0.9 * expected ? 20 : 200));
  }
}
