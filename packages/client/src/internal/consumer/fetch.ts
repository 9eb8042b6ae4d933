/**
 * One round trip per stream for the idle partitions of a member, the
 * streams' queries at once: each partition is an index range scan on
 * (stream, partition, "offset") from its position, limited to `limit`
 * events, joined LATERAL over the requested positions, over the one or two
 * segments that can hold them (segment_bounds, migration 0011). The stream
 * is a parameter of its own query, not a column of the positions: PostgreSQL
 * prunes the other streams' tables before it starts the scan (a value from
 * the LATERAL join prunes only at run time, after every partition's scan of
 * every stream was set up, which grows with every segment of the database).
 * A position below the partition's low watermark reads from the watermark:
 * the first event's offset is past the position.
 */
import type { Sql } from "postgres";
import { rawEvent, toStreamEvent, type EventRow, type RawStreamEvent, type StreamEvent } from "../events.ts";
import { partitionKey } from "./assignor.ts";

type Position = { readonly stream: string; readonly partition: number; readonly from: number };

function byStream(positions: readonly Position[]): Map<string, Position[]> {
  const streams = new Map<string, Position[]>();
  for (const p of positions) {
    let list = streams.get(p.stream);
    if (!list) streams.set(p.stream, (list = []));
    list.push(p);
  }
  return streams;
}

export async function fetchPartitions(sql: Sql, positions: readonly Position[], limit: number): Promise<Map<string, StreamEvent[]>> {
  const perStream = await Promise.all([...byStream(positions)].map(([stream, own]) => sql<EventRow[]>`
    select e.stream, e.partition, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
      from unnest(${own.map((p) => p.partition)}::int[], ${own.map((p) => p.from)}::bigint[]) as p(partition, from_offset)
      cross join lateral tributary.segment_bounds(${stream}, p.partition, p.from_offset, ${limit}) b
      cross join lateral (
        select * from tributary.events e
         where e.stream = ${stream} and e.partition = p.partition and e.segment between b.lo and b.hi and e."offset" >= p.from_offset
         order by e."offset"
         limit ${limit}
      ) e`));
  return byPartition(perStream.flatMap((rows) => rows.map(toStreamEvent)));
}

/**
 * fetchPartitions for raw handlers: the same scans, rows as PostgreSQL sent
 * them (postgres.js raw mode: no text decoding, no JSON.parse, no Date).
 * Each row names its request by index, so no stream name is decoded per row.
 */
export async function fetchRawPartitions(sql: Sql, positions: readonly Position[], limit: number): Promise<Map<string, RawStreamEvent[]>> {
  const perStream = await Promise.all([...byStream(positions)].map(async ([stream, own]) => {
    const rows = (await sql`
      select p.i, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
        from unnest(${own.map((p) => p.partition)}::int[], ${own.map((p) => p.from)}::bigint[]) with ordinality as p(partition, from_offset, i)
        cross join lateral tributary.segment_bounds(${stream}, p.partition, p.from_offset, ${limit}) b
        cross join lateral (
          select * from tributary.events e
           where e.stream = ${stream} and e.partition = p.partition and e.segment between b.lo and b.hi and e."offset" >= p.from_offset
           order by e."offset"
           limit ${limit}
        ) e`.raw()) as unknown as Buffer[][];
    return rows.map((row) => {
      const position = own[Number(row[0]!.toString("latin1")) - 1]!;
      return rawEvent(position.stream, position.partition, row, 1);
    });
  }));
  return byPartition(perStream.flat());
}

/**
 * The fetched events by partition, each in offset order: the lateral scans
 * return each partition in offset order, but SQL does not promise that for
 * the joined result, so make sure.
 */
function byPartition<E extends { readonly stream: string; readonly partition: number; readonly offset: number }>(events: readonly E[]): Map<string, E[]> {
  const batches = new Map<string, E[]>();
  for (const event of events) {
    const key = partitionKey(event.stream, event.partition);
    let batch = batches.get(key);
    if (!batch) batches.set(key, (batch = []));
    batch.push(event);
  }
  for (const batch of batches.values()) {
    for (let i = 1; i < batch.length; i++) {
      if (batch[i]!.offset <= batch[i - 1]!.offset) {
        batch.sort((a, b) => a.offset - b.offset);
        break;
      }
    }
  }
  return batches;
}
