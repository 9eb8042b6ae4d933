/**
 * One stream event as one Kafka record (DESIGN.md invariant 11):
 *   key     = the event key (so Kafka's partitioner keeps per-key order)
 *   value   = the event data as JSON
 *   headers = the event's own headers as they are (e.g. traceparent, so tracing
 *             carries over), plus tributary-id, -type, -stream, -partition,
 *             -offset and -committed-at. tributary-id identifies the
 *             duplicates a crash can cause (the uncommitted tail is re-sent).
 * The partition is the stream partition when the topic has as many
 * partitions as the stream (the relay uses Kafka's murmur2, so it is the
 * partition Kafka would choose); otherwise Kafka's partitioner decides by key.
 */
import type { StreamEvent } from "@tributary/client";

export interface KafkaRecord {
  readonly key: string;
  readonly value: string;
  readonly partition?: number;
  readonly headers: Record<string, string>;
}

export const HEADER_PREFIX = "tributary-";

export function toKafkaRecord(event: StreamEvent, samePartitioning: boolean): KafkaRecord {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers)) {
    if (value === null || value === undefined) continue;
    headers[name] = typeof value === "string" ? value : JSON.stringify(value);
  }
  headers[`${HEADER_PREFIX}id`] = event.id;
  headers[`${HEADER_PREFIX}type`] = event.type;
  headers[`${HEADER_PREFIX}stream`] = event.stream;
  headers[`${HEADER_PREFIX}partition`] = String(event.partition);
  headers[`${HEADER_PREFIX}offset`] = String(event.offset);
  headers[`${HEADER_PREFIX}committed-at`] = event.committedAt.toISOString();
  const record = { key: event.key, value: JSON.stringify(event.data), headers };
  return samePartitioning ? { ...record, partition: event.partition } : record;
}
