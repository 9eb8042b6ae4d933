/**
 * The shape of the events handlers and readers receive, decoded
 * (StreamEvent) or raw (RawStreamEvent), and a raw read of one partition from
 * an offset (an index range scan on the primary key (stream, partition, "offset")).
 */
import type { Sql, TransactionSql } from "postgres";

export interface StreamEvent<Data = unknown> {
  readonly stream: string;
  readonly partition: number;
  /**
   * Dense per partition, from 0. A number: exact up to 2^53 events per
   * partition (285 years at a million events per second).
   */
  readonly offset: number;
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly data: Data;
  readonly headers: Record<string, unknown>;
  readonly committedAt: Date;
}

export interface EventRow {
  stream: string;
  partition: number;
  offset: string;
  id: string;
  key: string;
  type: string;
  data: unknown;
  headers: Record<string, unknown>;
  committed_at: Date;
}

export function toStreamEvent(row: EventRow): StreamEvent {
  return {
    stream: row.stream,
    partition: row.partition,
    offset: Number(row.offset),
    id: row.id,
    key: row.key,
    type: row.type,
    data: row.data,
    headers: row.headers,
    committedAt: row.committed_at,
  };
}

/**
 * A stream event as PostgreSQL sent it, for forwarding without decoding (the
 * Kafka bridge: ConsumerOptions.rawBatchHandler): each column's text as the
 * bytes that arrived. `data` and `headers` are jsonb's text (JSON),
 * `committedAt` timestamptz's text in the session's time zone
 * ("2026-11-22 07:00:00.123456+00"). The buffers are views of the connection's
 * receive buffer: copy what must outlive the batch.
 */
export interface RawStreamEvent {
  readonly stream: string;
  readonly partition: number;
  readonly offset: number;
  readonly id: Buffer;
  readonly key: Buffer;
  readonly type: Buffer;
  readonly data: Buffer;
  readonly headers: Buffer;
  readonly committedAt: Buffer;
}

/** The decoded event of a raw one (what a handler of decoded events would have got). */
export function decodeRawEvent(e: RawStreamEvent): StreamEvent {
  return {
    stream: e.stream,
    partition: e.partition,
    offset: e.offset,
    id: e.id.toString(),
    key: e.key.toString(),
    type: e.type.toString(),
    data: JSON.parse(e.data.toString()),
    headers: JSON.parse(e.headers.toString()) as Record<string, unknown>,
    committedAt: new Date(e.committedAt.toString()),
  };
}

/**
 * Up to `limit` events of one partition with offset >= `from`, in offset
 * order, raw (RawStreamEvent). The benchmarks read the stream back with it
 * (exported from @tributary/client/internals).
 */
export async function readRawPartition(
  sql: Sql | TransactionSql,
  options: { stream: string; partition: number; from: number; limit: number },
): Promise<RawStreamEvent[]> {
  const rows = (await sql`
    select e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
      from tributary.read_partitions(${options.stream}, ${[options.partition]}::int[], ${[options.from]}::bigint[], ${options.limit}) e
     order by e."offset"`.raw()) as unknown as Buffer[][];
  return rows.map((r) => rawEvent(options.stream, options.partition, r, 0));
}

/** A raw row's (offset, id, key, type, data, headers, committed_at) from column `at` on. */
export function rawEvent(stream: string, partition: number, row: readonly Buffer[], at: number): RawStreamEvent {
  return {
    stream,
    partition,
    offset: Number(row[at]!.toString("latin1")),
    id: row[at + 1]!,
    key: row[at + 2]!,
    type: row[at + 3]!,
    data: row[at + 4]!,
    headers: row[at + 5]!,
    committedAt: row[at + 6]!,
  };
}

