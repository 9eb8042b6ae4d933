/**
 * Where reading a partition starts: "earliest" (offset 0), "latest" (the
 * partition's end: the next offset the relay will assign), an offset, or a
 * time (the first event committed at or after it; the end if none).
 */
import type { Sql, TransactionSql } from "postgres";

export type StartPosition = "earliest" | "latest" | number | Date;

export async function resolveStartOffset(sql: Sql | TransactionSql, stream: string, partition: number, from: StartPosition): Promise<number> {
  if (from === "earliest") return 0;
  if (typeof from === "number") {
    if (!Number.isSafeInteger(from) || from < 0) throw new RangeError(`invalid offset ${from}: use a whole number >= 0`);
    return from;
  }
  const [end] = await sql<{ next_offset: string }[]>`
    select next_offset::text from tributary.partition_offsets where stream = ${stream} and partition = ${partition}`;
  const endOffset = end ? Number(end.next_offset) : 0;
  if (from === "latest") return endOffset;
  const [first] = await sql<{ offset: string }[]>`
    select "offset"::text from tributary.events
     where stream = ${stream} and partition = ${partition} and committed_at >= ${from}
     order by "offset" limit 1`;
  return first ? Number(first.offset) : endOffset;
}
