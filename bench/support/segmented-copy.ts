/**
 * bench:consumer (a) on many segments: a copy of the relayed backlog in new
 * streams (`<stream>.seg`) split into `segments` storage segments each, as
 * the relay would have left them had it rolled a segment every
 * 1/segments of the backlog (migrations 0010 and 0011): segment g of
 * partition p holds its offsets from ceil(count_p × g / segments) on, the
 * catalog has those first offsets. Same rows, same offsets, so the catch-up
 * figures on the copy and on the original differ by the layout alone.
 */
import type { Sql } from "postgres";

export const segmentedName = (stream: string) => `${stream}.seg`;

export async function copyIntoSegments(sql: Sql, streams: readonly string[], partitions: number, segments: number): Promise<{ seconds: number }> {
  const started = performance.now();
  for (const stream of streams) {
    const copy = segmentedName(stream);
    await sql`select tributary.create_stream(${copy}, ${partitions})`;
    const counts = await sql<{ partition: number; next_offset: string }[]>`
      select partition, next_offset::text from tributary.partition_offsets where stream = ${stream} order by partition`;
    const count = Array.from({ length: partitions }, (_, p) => Number(counts.find((c) => c.partition === p)?.next_offset ?? 0));
    for (let g = 1; g < segments; g++) {
      await sql`select tributary.create_segment(${copy}, ${g})`;
      const first = count.map((c) => Math.ceil((c * g) / segments));
      await sql`update tributary.segments set first_offsets = ${`{${first.join(",")}}`}::bigint[], started_at = now() where stream = ${copy} and segment = ${g}`;
    }
    // floor(offset × segments / count) is the last segment whose first offset is at or before the offset.
    await sql`
      insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
      select ${copy}, e.partition, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at,
             (e."offset" * ${segments} / po.next_offset)::int
        from tributary.events e join tributary.partition_offsets po on po.stream = e.stream and po.partition = e.partition
       where e.stream = ${stream}
       order by e."offset", e.partition`;
    await sql`
      insert into tributary.partition_offsets (stream, partition, next_offset)
      select ${copy}, partition, next_offset from tributary.partition_offsets where stream = ${stream}`;
  }
  await sql`vacuum analyze tributary.events`;
  return { seconds: (performance.now() - started) / 1000 };
}
