/**
 * Which Kafka topic each stream goes to, and whether the topic's partitions
 * line up with the stream's (then stream partition p → Kafka partition p).
 * A missing topic is created with the stream's partition count only when
 * allowed (createTopics); otherwise it is an error naming the topic.
 */
import type { Admin } from "kafkajs";
import type { Sql } from "postgres";
import { BridgeError } from "./errors.ts";

export interface TopicRoute {
  readonly stream: string;
  readonly topic: string;
  readonly streamPartitions: number;
  readonly topicPartitions: number;
  /** Stream partition p goes to Kafka partition p. */
  readonly samePartitioning: boolean;
}

export interface TopicNaming {
  readonly topicPrefix?: string;
  /** stream → topic, overriding the prefix. */
  readonly topicMap?: Readonly<Record<string, string>>;
}

export const topicName = (stream: string, naming: TopicNaming): string =>
  naming.topicMap?.[stream] ?? `${naming.topicPrefix ?? ""}${stream}`;

export async function routeTopics(sql: Sql, admin: Admin, streams: readonly string[], naming: TopicNaming, createTopics: boolean): Promise<TopicRoute[]> {
  const rows = await sql<{ name: string; partitions: number }[]>`
    select name, partitions from tributary.streams where name = any (${[...streams]}::text[])`;
  const partitionsOf = new Map(rows.map((r) => [r.name, r.partitions]));
  const missingStreams = streams.filter((s) => !partitionsOf.has(s));
  if (missingStreams.length > 0) {
    throw new BridgeError("STREAM_MISSING", `stream${missingStreams.length > 1 ? "s" : ""} ${missingStreams.map((s) => `'${s}'`).join(", ")} not found: check the stream names given (tributary.streams lists the streams), or create it with tributary.create_stream.`);
  }
  const existing = new Set(await admin.listTopics());
  const toCreate = streams.filter((s) => !existing.has(topicName(s, naming)));
  if (toCreate.length > 0) {
    if (!createTopics) {
      const names = toCreate.map((s) => `'${topicName(s, naming)}' (for stream '${s}', ${partitionsOf.get(s)} partitions)`).join(", ");
      throw new BridgeError("TOPIC_MISSING", `Kafka topic ${names} does not exist: create it with the stream's partition count, or run the bridge with createTopics: true.`);
    }
    await admin.createTopics({
      waitForLeaders: true,
      topics: toCreate.map((s) => ({ topic: topicName(s, naming), numPartitions: partitionsOf.get(s)! })),
    });
  }
  const metadata = await admin.fetchTopicMetadata({ topics: streams.map((s) => topicName(s, naming)) });
  const topicPartitions = new Map(metadata.topics.map((t) => [t.name, t.partitions.length]));
  return streams.map((stream) => {
    const topic = topicName(stream, naming);
    const streamPartitions = partitionsOf.get(stream)!;
    const count = topicPartitions.get(topic)!;
    return { stream, topic, streamPartitions, topicPartitions: count, samePartitioning: count === streamPartitions };
  });
}
