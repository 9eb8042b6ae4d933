/**
 * npm run bench:seek — seeking by time on a stream of millions of events
 * (issue 13): tributary.first_offset_at(), what a reader's `from: Date`,
 * `tail --from TIME` and `groups reset --to TIME` run once per partition,
 * without time marks (the scan starts at the segment start: the partition's
 * first event on a stream without retention) and with them
 * (migrations/0013_time_marks.sql), on the same rows in one run.
 *
 *   1. load: one stream without retention (one segment), `--partitions`
 *      partitions, `--events` events, ~200-byte jsonb, one commit time per
 *      millisecond across the partitions, written as the relay writes them
 *   2. seek at `--seeks` times spread evenly over the stream's commit times,
 *      every partition each (a reader's start), with no marks
 *   3. tributary.mark_times() until it marks nothing: its cost per event
 *   4. the same seeks with the marks; every answer must equal step 2's
 */
import postgres from "postgres";
import { applyMigrations, readMigrations } from "@tributary/migrate";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, startBenchServer } from "./support/bench-server.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { median } from "./support/median.ts";

const usage = `npm run bench:seek -- [flags]
${serverUsage}
  --events N       events in the stream (default 2000000)
  --partitions N   partitions (default 4)
  --seeks N        seek times, spread over the stream (default 20)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  { events: { type: "string", default: "2000000" }, partitions: { type: "string", default: "4" }, seeks: { type: "string", default: "20" } },
  usage,
);
const PARTITIONS = positiveInt(values.partitions, "partitions");
const perPartition = Math.ceil(positiveInt(values.events, "events") / PARTITIONS);
const total = perPartition * PARTITIONS;
const seeks = positiveInt(values.seeks, "seeks");
const EPOCH = "2026-12-01 00:00:00+00";

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
try {
  const server = await describeServer(sql);
  await applyMigrations(sql, readMigrations());
  await sql`select tributary.create_stream('orders', ${PARTITIONS})`;
  progress(`writing ${fmt.int(total)} events`);
  const step = 250_000;
  for (let from = 0; from < perPartition; from += step) {
    const to = Math.min(perPartition, from + step) - 1;
    await sql`
      insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
      select 'orders', p, o, gen_random_uuid(), 'k-' || ((o * ${PARTITIONS} + p) * 7919 % 10000), 'OrderPlaced',
             jsonb_build_object('orderId', 'o-' || lpad(o::text, 9, '0'), 'customer', jsonb_build_object('id', 'c-' || (o * 7919 % 100000)),
                                'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (o * 31 % 10000), 'qty', 1 + o % 4, 'price', (o % 9000 + 99) / 100.0)),
                                'placedAt', '2026-11-22T04:22:07.172Z'),
             '{}', ${EPOCH}::timestamptz + (o * ${PARTITIONS} + p) * interval '1 ms', 0
        from generate_series(${from}::bigint, ${to}::bigint) o, generate_series(0, ${PARTITIONS - 1}) p
       order by o, p`;
  }
  await sql`insert into tributary.partition_offsets (stream, partition, next_offset) select 'orders', p, ${perPartition} from generate_series(0, ${PARTITIONS - 1}) p`;
  await sql`vacuum analyze tributary.events`;

  const times = Array.from({ length: seeks }, (_, i) => Math.floor(((i + 0.5) / seeks) * total));
  /** Each seek time, every partition: ms per reader start, and the offsets found. */
  async function seekAll(): Promise<{ ms: number[]; answers: string[] }> {
    const ms: number[] = [];
    const answers: string[] = [];
    for (const t of times) {
      const started = performance.now();
      const rows = await sql<{ o: string | null }[]>`
        select tributary.first_offset_at('orders', p, ${EPOCH}::timestamptz + ${t} * interval '1 ms')::text as o
          from generate_series(0, ${PARTITIONS - 1}) p order by p`;
      ms.push(performance.now() - started);
      answers.push(rows.map((r) => r.o).join(","));
    }
    return { ms, answers };
  }

  progress(`seeking at ${seeks} times without time marks`);
  const before = await seekAll();
  progress("marking");
  const markStarted = performance.now();
  let blocks = 0;
  for (;;) {
    const [row] = await sql<{ n: number }[]>`select tributary.mark_times(1000) as n`;
    if (row!.n === 0) break;
    blocks += row!.n;
  }
  const markSeconds = (performance.now() - markStarted) / 1000;
  progress(`seeking at ${seeks} times with ${fmt.int(blocks)} marks`);
  const after = await seekAll();
  const wrong = after.answers.filter((a, i) => a !== before.answers[i]!).length;
  if (wrong > 0) throw new Error(`${wrong} of ${seeks} seeks answered differently with time marks`);
  const [sizes] = await sql<{ marks: string; events: string }[]>`
    select pg_total_relation_size('tributary.time_marks')::text as marks,
           (select sum(pg_total_relation_size(relid)) from pg_partition_tree('tributary.events'))::text as events`;

  const describe = (xs: number[]) => `median ${median(xs).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms`;
  process.stdout.write(
    `\nSeeking by time (${new Date().toISOString()})\n${server}\n\n` +
      formatTable(["", ""], [
        ["stream", `${fmt.int(total)} events, ${PARTITIONS} partitions, one segment (no retention); ${fmt.mb(Number(sizes!.events))}`],
        ["seek (first_offset_at on every partition)", `${seeks} times spread over the stream, the same answers with and without marks`],
        ["(a) without time marks", describe(before.ms)],
        ["(b) with time marks", describe(after.ms)],
        ["(a) / (b), medians", `${(median(before.ms) / median(after.ms)).toFixed(0)}×`],
        ["marking (mark_times)", `${fmt.int(blocks)} blocks in ${markSeconds.toFixed(1)} s = ${((markSeconds * 1e6) / total).toFixed(2)} µs per event; marks ${fmt.mb(Number(sizes!.marks))}`],
      ]) +
      `\n\nmachine: load average before ${loadBefore}, after ${loadAverage()}\n`,
  );
} catch (error) {
  process.stderr.write(`bench:seek failed: ${(error as Error)?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
