/**
 * One round trip per stream for the idle partitions of a member, the
 * streams' queries at once: tributary.read_partitions (migration 0011) reads
 * up to `limit` events of each partition from its position, an index range
 * scan in offset order over the one or two segments that can hold them,
 * pruned while planning, so a fetch costs the same however many segments
 * the stream keeps (bench:consumer --segments). A position below the
 * partition's low watermark reads from the watermark: the first event's
 * offset is past the position.
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
      from tributary.read_partitions(${stream}, ${own.map((p) => p.partition)}::int[], ${own.map((p) => p.from)}::bigint[], ${limit}) e`));
  return byPartition(perStream.flatMap((rows) => rows.map(toStreamEvent)));
}

/**
 * fetchPartitions for raw handlers: the same reads, rows as PostgreSQL sent
 * them (postgres.js raw mode: no text decoding, no JSON.parse, no Date).
 */
export async function fetchRawPartitions(sql: Sql, positions: readonly Position[], limit: number): Promise<Map<string, RawStreamEvent[]>> {
  const perStream = await Promise.all([...byStream(positions)].map(async ([stream, own]) => {
    const rows = (await sql`
      select e.partition, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
        from tributary.read_partitions(${stream}, ${own.map((p) => p.partition)}::int[], ${own.map((p) => p.from)}::bigint[], ${limit}) e`.raw()) as unknown as Buffer[][];
    return rows.map((row) => rawEvent(stream, Number(row[0]!.toString("latin1")), row, 1));
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
