/**
 * npm run bench:upgrade — how long the upgrade to the segmented stream table
 * takes (migrations/0010_stream_segments.sql copies every event of the flat
 * table into its stream's first segment), per million events.
 *
 *   1. migrate to the schema before it (0001–0009), slot included;
 *   2. N events in the flat table as the relay wrote them (4 streams × 8
 *      partitions, dense offsets, ~200-byte jsonb, a traceparent header),
 *      their partitions' next offsets, VACUUM ANALYZE;
 *   3. time `tributary migrate` applying 0010 and 0011, check every event is
 *      there with its offset, print the rate and the sizes before and after.
 */
import postgres from "postgres";
import { applyMigrations, readMigrations } from "@tributary/migrate";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, startBenchServer } from "./support/bench-server.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";

const usage = `npm run bench:upgrade -- [flags]
${serverUsage}
  --events N    events in the flat table before the upgrade (default 1000000)`;

const { flags, values } = parseBenchFlags(process.argv.slice(2), { events: { type: "string", default: "1000000" } }, usage);
const events = positiveInt(values.events, "events");
const STREAMS = ["orders", "payments", "shipments", "audit"];
const PARTITIONS = 8;
const perPartition = Math.ceil(events / (STREAMS.length * PARTITIONS));
const total = perPartition * STREAMS.length * PARTITIONS;

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
try {
  const server = await describeServer(sql);
  const files = readMigrations();
  await applyMigrations(sql, files.filter((m) => m.version < 10));
  for (const stream of STREAMS) await sql`select tributary.create_stream(${stream}, ${PARTITIONS})`;
  progress(`writing ${fmt.int(total)} events into the flat table`);
  const writeStarted = performance.now();
  for (const stream of STREAMS) {
    await sql`
      insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at)
      select ${stream}, p, o, gen_random_uuid(), 'k-' || ((o * ${PARTITIONS} + p) * 7919 % 10000), 'OrderPlaced',
             jsonb_build_object('orderId', 'o-' || lpad(o::text, 9, '0'), 'customer', jsonb_build_object('id', 'c-' || (o * 7919 % 100000)),
                                'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (o * 31 % 10000), 'qty', 1 + o % 4, 'price', (o % 9000 + 99) / 100.0)),
                                'placedAt', '2026-11-22T04:22:07.172Z'),
             jsonb_build_object('traceparent', '00-' || md5(o::text) || '-' || left(md5(p::text), 16) || '-01'),
             timestamptz '2026-12-01 00:00:00+00' + o * interval '1 ms'
        from generate_series(0, ${perPartition - 1}) o, generate_series(0, ${PARTITIONS - 1}) p
       order by o, p`;
    await sql`insert into tributary.partition_offsets (stream, partition, next_offset) select ${stream}, p, ${perPartition} from generate_series(0, ${PARTITIONS - 1}) p`;
  }
  await sql`vacuum analyze tributary.events`;
  const writeSeconds = (performance.now() - writeStarted) / 1000;
  const [before] = await sql<{ bytes: string }[]>`select pg_total_relation_size('tributary.events')::text as bytes`;

  progress("migrating: 0010 (the copy) and 0011");
  const started = performance.now();
  const result = await applyMigrations(sql, files);
  const seconds = (performance.now() - started) / 1000;
  const [after] = await sql<{ n: string; bytes: string; dense: boolean }[]>`
    select sum(n)::text as n,
           (select sum(pg_total_relation_size(relid)) from pg_partition_tree('tributary.events'))::text as bytes,
           bool_and(n = ${perPartition} and max_offset = ${perPartition - 1}) as dense
      from (select stream, partition, count(*) as n, max("offset") as max_offset from tributary.events group by 1, 2) p`;
  if (Number(after!.n) !== total || !after!.dense) throw new Error(`after the upgrade: ${after!.n} events (expected ${fmt.int(total)}), dense per partition: ${after!.dense}`);
  process.stdout.write(
    `\nUpgrade to the segmented stream table (${new Date().toISOString()})\n${server}\n\n` +
      formatTable(["", ""], [
        ["events before the upgrade", `${fmt.int(total)} (${STREAMS.length} streams × ${PARTITIONS} partitions), written in ${writeSeconds.toFixed(1)} s`],
        ["migrations applied", result.applied.map((m) => `${String(m.version).padStart(4, "0")}_${m.name}`).join(", ")],
        ["upgrade", `${seconds.toFixed(1)} s = ${fmt.int(total / seconds)} events/s = ${((seconds * 1_000_000) / total).toFixed(1)} s per million events`],
        ["stream table", `${fmt.mb(Number(before!.bytes))} before, ${fmt.mb(Number(after!.bytes))} after (table and indexes)`],
        ["check", "every event there, offsets dense per partition"],
      ]) +
      `\n\nmachine: load average before ${loadBefore}, after ${loadAverage()}\n`,
  );
} catch (error) {
  process.stderr.write(`bench:upgrade failed: ${(error as Error)?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
