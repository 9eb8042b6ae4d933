/**
 * Positions below a partition's low watermark (docs/ARCHITECTURE.md invariant
 * 15): retention dropped the segments that held them. Offsets are never
 * moved or reused, so a reader or group positioned there is told, never
 * silently moved: per consumer or reader, like Kafka's `auto.offset.reset`,
 *   "resume"  go on from the low watermark and report how many events were missed;
 *   "fail"    stop with OFFSET_OUT_OF_RANGE.
 * Offsets are dense above the watermark, so a read that starts past its
 * position is what shows it; the watermark itself comes from
 * tributary.low_watermarks (migration 0011).
 */
import type { Sql, TransactionSql } from "postgres";

export type OutOfRangePolicy = "resume" | "fail";

/** Events a reader or group member never saw: retention dropped them before it got there. */
export interface MissedEvents {
  readonly stream: string;
  readonly partition: number;
  /** Where it was. */
  readonly position: number;
  /** Where it goes on ("resume"): the partition's first retained offset. */
  readonly lowWatermark: number;
  /** lowWatermark - position. */
  readonly missed: number;
}

/** The first retained offset of each of a stream's partitions (0 where nothing expired). */
export async function lowWatermarks(sql: Sql | TransactionSql, stream: string, partitions: readonly number[]): Promise<Map<number, number>> {
  const rows = await sql<{ partition: number; low_watermark: string }[]>`
    select p.partition, coalesce(w.low_watermark, 0)::text as low_watermark
      from unnest(${partitions as number[]}::int[]) as p(partition)
      left join tributary.low_watermarks w on w.stream = ${stream} and w.partition = p.partition`;
  return new Map(rows.map((r) => [r.partition, Number(r.low_watermark)]));
}

/** What a position below the watermark missed, or null when it is not below. */
export async function missedBelowWatermark(sql: Sql | TransactionSql, stream: string, partition: number, position: number): Promise<MissedEvents | null> {
  const lowWatermark = (await lowWatermarks(sql, stream, [partition])).get(partition)!;
  return lowWatermark > position ? { stream, partition, position, lowWatermark, missed: lowWatermark - position } : null;
}

export function describeMissed(m: MissedEvents): string {
  return `${m.stream}/${m.partition} was at offset ${m.position}, below its low watermark ${m.lowWatermark}: ` +
    `retention dropped ${m.missed} event${m.missed === 1 ? "" : "s"} before they were read`;
}
