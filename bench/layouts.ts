/**
 * npm run bench:layouts — candidate layouts of the stream table side by side
 * on one server (issue 13: retention by dropping whole segments). Not the
 * product's tables: each layout is built in a schema of its own with the same
 * rows, so the comparison is the layout alone.
 *
 *   flat         today's tributary.events: one table, primary key
 *                (stream, partition, "offset"), index (stream, key, "offset")
 *   segmented N  LIST (stream) → RANGE (segment), N segments per stream; a
 *                unique index (stream, partition, segment, "offset") (a
 *                partitioned table's unique index must hold its partition
 *                keys) and (key, "offset"); a catalog of segments with each
 *                segment's first offset per partition and its commit times;
 *                also with the unique index as (stream, partition, "offset",
 *                segment), read in offset order (a Merge Append)
 *
 * For each layout:
 *   1. load: the same rows (streams × partitions × events, ~200-byte jsonb,
 *      partitions interleaved as a relay writes them), one INSERT … SELECT
 *      per segment's worth of offsets: the server's cost of storing them
 *   2. catch-up: a consumer group member's fetch (consumer/fetch.ts: every
 *      partition in one round trip, LATERAL, `limit` events each) from
 *      offset 0 to the end, prepared as postgres.js prepares it; the
 *      segmented layouts bound each partition's scan by the segment that
 *      holds its position, from the catalog
 *   3. seek by time: the first offset at or after a commit time, per
 *      partition (the reader's `from: Date`, `groups reset --to TIME`)
 *   4. sizes of the table and its indexes
 */
import postgres, { type Sql } from "postgres";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, startBenchServer } from "./support/bench-server.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { median } from "./support/median.ts";

const usage = `npm run bench:layouts -- [flags]
${serverUsage}
  --events N        events per partition (default 31250: 1,000,000 in all)
  --streams N       streams (default 4)
  --partitions N    partitions per stream (default 8)
  --segments N,N,…  the segmented layouts' segments per stream (default 1,100)
  --limit N         events per partition per fetch (default 500, a member's batchSize)
  --rounds N        repeat the catch-up and seek phases (default 2)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    events: { type: "string", default: "31250" },
    streams: { type: "string", default: "4" },
    partitions: { type: "string", default: "8" },
    segments: { type: "string", default: "1,100" },
    limit: { type: "string", default: "500" },
    rounds: { type: "string", default: "2" },
  },
  usage,
);
const perPartition = positiveInt(values.events, "events");
const streams = Array.from({ length: positiveInt(values.streams, "streams") }, (_, i) => `stream${i}`);
const partitions = positiveInt(values.partitions, "partitions");
const segmentCounts = String(values.segments).split(",").map((n) => positiveInt(n, "segments"));
const limit = positiveInt(values.limit, "limit");
const rounds = positiveInt(values.rounds, "rounds");
const totalEvents = perPartition * partitions * streams.length;
const EPOCH = "2026-12-01 00:00:00+00";

interface Layout {
  readonly name: string;
  readonly schema: string;
  /** Segments per stream; 0 for the flat table. */
  readonly segments: number;
  /**
   * The unique index's order: (stream, partition, segment, "offset"), read
   * `order by segment, "offset"` (an ordered Append, segment after segment),
   * or (stream, partition, "offset", segment), read `order by "offset"` (a
   * Merge Append over the segments left after pruning); "split": the
   * segment-first index, read as two scans, the position's segment from the
   * position (equality on segment, so the index seeks to the offset), then
   * the later segments in order; "cached": the split scan with each
   * position's segment from a copy of the catalog the client keeps, passed
   * as parameters, and the oldest of them as a plain parameter bound, which
   * PostgreSQL prunes by before it initialises the segments' scans.
   */
  readonly order: "segment" | "offset" | "split" | "cached";
}

const layouts: Layout[] = [
  { name: "flat (today)", schema: "layout_flat", segments: 0, order: "offset" },
  ...segmentCounts.flatMap((n): Layout[] => [
    { name: `segmented, ${n} segment${n === 1 ? "" : "s"}/stream`, schema: `layout_seg${n}`, segments: n, order: "segment" },
    { name: `segmented, ${n} segment${n === 1 ? "" : "s"}/stream, offset-first index`, schema: `layout_seg${n}_o`, segments: n, order: "offset" },
    { name: `segmented, ${n} segment${n === 1 ? "" : "s"}/stream, split scan`, schema: `layout_seg${n}_s`, segments: n, order: "split" },
    { name: `segmented, ${n} segment${n === 1 ? "" : "s"}/stream, split scan, cached catalog`, schema: `layout_seg${n}_c`, segments: n, order: "cached" },
  ]),
];

async function create(sql: Sql, layout: Layout): Promise<void> {
  const s = layout.schema;
  await sql.unsafe(`drop schema if exists ${s} cascade; create schema ${s}`);
  const columns = `stream text not null, partition int not null, "offset" bigint not null, id uuid not null, key text not null,
                   type text not null, data jsonb not null, headers jsonb not null, committed_at timestamptz not null`;
  if (layout.segments === 0) {
    await sql.unsafe(`create table ${s}.events (${columns}, primary key (stream, partition, "offset")) with (fillfactor = 100);
                      create index on ${s}.events (stream, key, "offset")`);
    return;
  }
  await sql.unsafe(`create table ${s}.events (${columns}, segment int not null) partition by list (stream)`);
  for (const stream of streams) {
    await sql.unsafe(`create table ${s}."events_${stream}" partition of ${s}.events for values in ('${stream}') partition by range (segment)`);
    for (let g = 0; g < layout.segments; g++) {
      await sql.unsafe(`create table ${s}."events_${stream}_${g}" partition of ${s}."events_${stream}" for values from (${g}) to (${g + 1}) with (fillfactor = 100)`);
    }
  }
  await sql.unsafe(`create unique index on ${s}.events ${layout.order === "offset" ? `(stream, partition, "offset", segment)` : `(stream, partition, segment, "offset")`};
                    create index on ${s}.events (key, "offset");
                    create table ${s}.segments (stream text not null, segment int not null, first_offsets bigint[] not null,
                                                min_committed_at timestamptz not null, max_committed_at timestamptz not null,
                                                primary key (stream, segment))`);
}

/** Offsets [from, to) of every partition of every stream, interleaved by offset as a relay would write them. */
async function insertRange(sql: Sql, layout: Layout, segment: number, from: number, to: number): Promise<void> {
  const s = layout.schema;
  const segmentColumn = layout.segments === 0 ? "" : ", segment";
  const segmentValue = layout.segments === 0 ? "" : `, ${segment}`;
  await sql.unsafe(`
    insert into ${s}.events (stream, partition, "offset", id, key, type, data, headers, committed_at${segmentColumn})
    select st, p, o, md5(st || p || '/' || o)::uuid, 'k-' || ((o * ${partitions} + p) * 7919 % 10000), 'OrderPlaced',
           jsonb_build_object('orderId', 'o-' || lpad(o::text, 9, '0'),
                              'customer', jsonb_build_object('id', 'c-' || (o * 7919 % 100000), 'tier', case when o % 3 = 0 then 'gold' else 'standard' end),
                              'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (o * 31 % 10000), 'qty', 1 + o % 4, 'price', (o % 9000 + 99) / 100.0),
                                                         jsonb_build_object('sku', 'SKU-' || (o * 17 % 10000), 'qty', 1, 'price', 5.5)),
                              'placedAt', '2026-11-22T04:22:07.172Z'),
           jsonb_build_object('traceparent', '00-' || md5(o::text) || '-' || left(md5(p::text), 16) || '-01'),
           timestamptz '${EPOCH}' + o * interval '1 ms'${segmentValue}
      from generate_series(${from}, ${to - 1}) o, unnest($1::text[]) st, generate_series(0, ${partitions - 1}) p
     order by o, st, p`, [streams]);
}

async function load(sql: Sql, layout: Layout): Promise<{ seconds: number; bytes: { table: number; indexes: number } }> {
  await create(sql, layout);
  const pieces = Math.max(layout.segments, 10);
  const started = performance.now();
  for (let i = 0; i < pieces; i++) {
    const from = Math.floor((perPartition * i) / pieces);
    const to = Math.floor((perPartition * (i + 1)) / pieces);
    const segment = layout.segments === 0 ? 0 : Math.floor((i * layout.segments) / pieces);
    await insertRange(sql, layout, segment, from, to);
  }
  const seconds = (performance.now() - started) / 1000;
  if (layout.segments > 0) {
    // The catalog a relay would write as it rolls segments: each segment's first offset per partition and its commit times.
    await sql.unsafe(`
      insert into ${layout.schema}.segments
      select stream, segment, array_agg(first order by partition), min(min_at), max(max_at)
        from (select stream, segment, partition, min("offset") as first, min(committed_at) as min_at, max(committed_at) as max_at
                from ${layout.schema}.events group by stream, segment, partition) per_partition
       group by stream, segment`);
  }
  await sql.unsafe(`vacuum (analyze) ${layout.schema}.events`);
  // pg_partition_tree lists nothing for a table that is not partitioned.
  const [size] = await sql.unsafe<{ table: string; indexes: string }[]>(layout.segments === 0
    ? `select pg_table_size('${layout.schema}.events')::text as table, pg_indexes_size('${layout.schema}.events')::text as indexes`
    : `select sum(pg_table_size(relid))::text as table, sum(pg_indexes_size(relid))::text as indexes
         from pg_partition_tree('${layout.schema}.events') where isleaf`);
  return { seconds, bytes: { table: Number(size!.table), indexes: Number(size!.indexes) } };
}

function fetchQuery(layout: Layout): string {
  const s = layout.schema;
  if (layout.order === "cached") {
    return `select p.i, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
              from unnest($1::text[], $2::int[], $3::bigint[], $5::int[]) with ordinality as p(stream, partition, from_offset, segment, i)
              cross join lateral (
                (select * from ${s}.events e
                  where e.stream = p.stream and e.partition = p.partition and e.segment = p.segment and e."offset" >= p.from_offset
                    and e.segment >= $6::int
                  order by e."offset" limit $4)
                union all
                (select * from ${s}.events e
                  where e.stream = p.stream and e.partition = p.partition and e.segment > p.segment and e.segment >= $6::int
                  order by e.segment, e."offset" limit $4)
                limit $4) e`;
  }
  if (layout.segments === 0) {
    return `select p.i, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
              from unnest($1::text[], $2::int[], $3::bigint[]) with ordinality as p(stream, partition, from_offset, i)
              cross join lateral (
                select * from ${s}.events e
                 where e.stream = p.stream and e.partition = p.partition and e."offset" >= p.from_offset
                 order by e."offset" limit $4) e`;
  }
  // g: the segment holding the position (the last whose first offset in the partition is at or before it). The
  // row comparison makes the index scan start at (g, position), not at the segment's first entry; the plain
  // bound on segment is what run-time partition pruning reads.
  const bound = layout.order === "segment"
    ? `e.segment >= g.segment and (e.segment, e."offset") >= (g.segment, p.from_offset)`
    : `e.segment >= g.segment and e."offset" >= p.from_offset`;
  return `select p.i, e."offset", e.id, e.key, e.type, e.data, e.headers, e.committed_at
            from unnest($1::text[], $2::int[], $3::bigint[]) with ordinality as p(stream, partition, from_offset, i)
            cross join lateral (
              select s.segment from ${s}.segments s
               where s.stream = p.stream and s.first_offsets[p.partition + 1] <= p.from_offset
               order by s.segment desc limit 1) g
            cross join lateral (${layout.order === "split"
              ? `(select * from ${s}.events e
                   where e.stream = p.stream and e.partition = p.partition and e.segment = g.segment and e."offset" >= p.from_offset
                   order by e."offset" limit $4)
                 union all
                 (select * from ${s}.events e
                   where e.stream = p.stream and e.partition = p.partition and e.segment > g.segment
                   order by e.segment, e."offset" limit $4)
                 limit $4`
              : `select * from ${s}.events e
                  where e.stream = p.stream and e.partition = p.partition and ${bound}
                  order by ${layout.order === "segment" ? `e.segment, e."offset"` : `e."offset"`} limit $4`}) e`;
}

/** Every partition from offset 0 to its end, `limit` events per partition per round trip. */
async function catchUp(sql: Sql, layout: Layout): Promise<{ seconds: number; fetches: number }> {
  const positions = streams.flatMap((stream) => Array.from({ length: partitions }, (_, partition) => ({ stream, partition, from: 0 })));
  const query = fetchQuery(layout);
  // "cached": the client's copy of the catalog, by stream: each segment's first offset per partition, oldest first.
  const catalog = new Map<string, Array<{ segment: number; first: number[] }>>();
  if (layout.order === "cached") {
    const rows = await sql.unsafe<{ stream: string; segment: number; first_offsets: string[] }[]>(
      `select stream, segment, first_offsets from ${layout.schema}.segments order by stream, segment`);
    for (const r of rows) catalog.set(r.stream, [...(catalog.get(r.stream) ?? []), { segment: r.segment, first: r.first_offsets.map(Number) }]);
  }
  const segmentOf = (stream: string, partition: number, from: number): number => {
    const segments = catalog.get(stream)!;
    let found = segments[0]!.segment;
    for (const g of segments) if (g.first[partition]! <= from) found = g.segment;
    return found;
  };
  let fetches = 0;
  let read = 0;
  const started = performance.now();
  while (true) {
    const open = positions.filter((p) => p.from < perPartition);
    if (open.length === 0) break;
    const params: unknown[] = [open.map((p) => p.stream), open.map((p) => p.partition), open.map((p) => p.from), limit];
    if (layout.order === "cached") {
      const segments = open.map((p) => segmentOf(p.stream, p.partition, p.from));
      params.push(segments, Math.min(...segments));
    }
    const rows = (await sql.unsafe(query, params as never[], { prepare: true }).raw()) as unknown as Buffer[][];
    fetches++;
    for (const row of rows) {
      const position = open[Number(row[0]!.toString("latin1")) - 1]!;
      const offset = Number(row[1]!.toString("latin1"));
      if (offset !== position.from) throw new Error(`${layout.name}: ${position.stream}/${position.partition} returned offset ${offset}, expected ${position.from}`);
      position.from = offset + 1;
      read++;
    }
  }
  if (read !== totalEvents) throw new Error(`${layout.name}: read ${read} events, expected ${totalEvents}`);
  return { seconds: (performance.now() - started) / 1000, fetches };
}

/** The first offset committed at or after 3/4 of each partition's time span, per partition; checked against the rows' own times. */
async function seekByTime(sql: Sql, layout: Layout): Promise<{ msPerSeek: number }> {
  const s = layout.schema;
  const target = Math.floor((perPartition * 3) / 4);
  const at = `timestamptz '${EPOCH}' + ${target} * interval '1 ms'`;
  const query = layout.segments === 0
    ? `select e."offset" from ${s}.events e where e.stream = $1 and e.partition = $2 and e.committed_at >= ${at} order by e."offset" limit 1`
    : `select e."offset" from ${s}.events e where e.stream = $1 and e.partition = $2 and e.committed_at >= ${at}
          and e.segment >= (select min(g.segment) from ${s}.segments g where g.stream = $1 and g.max_committed_at >= ${at})
        order by ${layout.order === "offset" ? `e."offset"` : `e.segment, e."offset"`} limit 1`;
  const started = performance.now();
  let seeks = 0;
  for (const stream of streams) {
    for (let partition = 0; partition < partitions; partition++) {
      const [row] = await sql.unsafe<{ offset: string }[]>(query, [stream, partition], { prepare: true });
      if (Number(row?.offset) !== target) throw new Error(`${layout.name}: seek found offset ${row?.offset}, expected ${target}`);
      seeks++;
    }
  }
  return { msPerSeek: (performance.now() - started) / seeks };
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
try {
  const server = await describeServer(sql);
  const loads = new Map<string, Awaited<ReturnType<typeof load>>>();
  for (const layout of layouts) {
    progress(`${layout.name}: loading ${fmt.int(totalEvents)} events`);
    loads.set(layout.name, await load(sql, layout));
  }
  const catchUps = new Map<string, number[]>();
  const seeks = new Map<string, number[]>();
  const fetchCounts = new Map<string, number>();
  for (let round = 1; round <= rounds; round++) {
    // Alternating within each round: the layouts share the machine's state (caches, load) as evenly as they can.
    for (const layout of round % 2 === 1 ? layouts : [...layouts].reverse()) {
      progress(`round ${round}: ${layout.name}: catch-up`);
      const c = await catchUp(sql, layout);
      catchUps.set(layout.name, [...(catchUps.get(layout.name) ?? []), totalEvents / c.seconds]);
      fetchCounts.set(layout.name, c.fetches);
      seeks.set(layout.name, [...(seeks.get(layout.name) ?? []), (await seekByTime(sql, layout)).msPerSeek]);
    }
  }
  const flat = layouts[0]!.name;
  const rows = layouts.map((layout) => {
    const l = loads.get(layout.name)!;
    const c = catchUps.get(layout.name)!;
    return [
      layout.name,
      `${fmt.int(totalEvents / l.seconds)} ev/s`,
      `${c.map((r) => fmt.int(r)).join(" / ")} ev/s (${fmt.int(fetchCounts.get(layout.name)!)} fetches)`,
      `${(median(c) / median(catchUps.get(flat)!)).toFixed(2)}×`,
      `${seeks.get(layout.name)!.map((ms) => ms.toFixed(2)).join(" / ")} ms`,
      `${fmt.mb(l.bytes.table)} + ${fmt.mb(l.bytes.indexes)}`,
    ];
  });
  process.stdout.write(
    `\nStream table layouts (${new Date().toISOString()})\n` +
      `${server}; ${fmt.int(totalEvents)} events: ${streams.length} streams × ${partitions} partitions × ${fmt.int(perPartition)}; fetches of ${limit} events per partition\n\n` +
      formatTable(["layout", "load (INSERT … SELECT)", `catch-up, rounds 1–${rounds}`, "catch-up vs flat (median)", "seek by time, per partition", "table + indexes"], rows) +
      `\n\nmachine: load average before ${loadBefore}, after ${loadAverage()}\n`,
  );
} catch (error) {
  process.stderr.write(`bench:layouts failed: ${(error as Error)?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
