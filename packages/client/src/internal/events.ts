/**
 * Reading events back from tributary.events: the shape handlers and readers
 * receive, and the one query that reads a partition from an offset (an index
 * range scan on the primary key (stream, partition, "offset")).
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

/** Up to `limit` events of one partition with offset >= `from`, in offset order. */
export async function readPartition(
  sql: Sql | TransactionSql,
  options: { stream: string; partition: number; from: number; limit: number },
): Promise<StreamEvent[]> {
  const rows = await sql<EventRow[]>`
    select stream, partition, "offset", id, key, type, data, headers, committed_at
      from tributary.events
     where stream = ${options.stream} and partition = ${options.partition} and "offset" >= ${options.from}
     order by "offset"
     limit ${options.limit}`;
  return rows.map(toStreamEvent);
}
