/**
 * One stream event as one Kafka record (docs/ARCHITECTURE.md invariant 11):
 *   key     = the event key (so Kafka's partitioner keeps per-key order)
 *   value   = the event data as JSON: the text PostgreSQL stored (jsonb's
 *             output), passed through as it is, never parsed and written again
 *   headers = the event's own headers as they are (e.g. traceparent, so tracing
 *             carries over), plus tributary-id, -type, -stream, -partition,
 *             -offset and -committed-at (ISO 8601, UTC, milliseconds).
 *             tributary-id identifies the duplicates a crash can cause (the
 *             uncommitted tail is re-sent).
 * The partition is the stream partition when the topic has as many
 * partitions as the stream (the relay uses Kafka's murmur2, so it is the
 * partition Kafka would choose); otherwise Kafka's partitioner decides by key.
 *
 * The bridge reads events raw (RawStreamEvent: each column's bytes as
 * PostgreSQL sent them), so the key, the value, the id and the type go to
 * Kafka as those bytes, with no text decoding, JSON.parse or JSON.stringify
 * on the way (bench:bridge measured them, with the garbage they left, at a
 * quarter of the bridge's CPU). Only the event's own headers are parsed (and
 * only when there are any), and the commit time is converted once per
 * transaction (its events share it).
 */
import type { RawStreamEvent } from "@tributary/client";

export interface KafkaRecord {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly partition?: number;
  readonly headers: Record<string, string | Buffer>;
}

export const HEADER_PREFIX = "tributary-";

const EMPTY_OBJECT = Buffer.from("{}");
let lastCommitText: Buffer = Buffer.alloc(0);
let lastCommitIso = "";
const streamNames = new Map<string, Buffer>();

/** timestamptz text ("2026-11-22 07:00:00.123456+00", any offset) → ISO 8601 UTC in ms, once per distinct value. */
function commitIso(text: Buffer): string {
  if (!text.equals(lastCommitText)) {
    lastCommitIso = new Date(text.toString("latin1")).toISOString();
    lastCommitText = Buffer.from(text); // a copy: the row's bytes are a view of a receive buffer
  }
  return lastCommitIso;
}

export function toKafkaRecord(event: RawStreamEvent, samePartitioning: boolean): KafkaRecord {
  const headers: Record<string, string | Buffer> = {};
  if (!event.headers.equals(EMPTY_OBJECT)) {
    const own = JSON.parse(event.headers.toString()) as Record<string, unknown>;
    for (const name in own) {
      const value = own[name];
      if (value === null || value === undefined) continue;
      headers[name] = typeof value === "string" ? value : JSON.stringify(value);
    }
  }
  let stream = streamNames.get(event.stream);
  if (!stream) streamNames.set(event.stream, (stream = Buffer.from(event.stream)));
  headers[`${HEADER_PREFIX}id`] = event.id;
  headers[`${HEADER_PREFIX}type`] = event.type;
  headers[`${HEADER_PREFIX}stream`] = stream;
  headers[`${HEADER_PREFIX}partition`] = String(event.partition);
  headers[`${HEADER_PREFIX}offset`] = String(event.offset);
  headers[`${HEADER_PREFIX}committed-at`] = commitIso(event.committedAt);
  return samePartitioning
    ? { key: event.key, value: event.data, headers, partition: event.partition }
    : { key: event.key, value: event.data, headers };
}
