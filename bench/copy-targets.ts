/**
 * npm run bench:copy-targets — the server's cost of the relay's COPY into
 * each table it could target, side by side on one server (issue 13; why the
 * relay copies into segments, docs/ARCHITECTURE.md "Storage segments and
 * retention"):
 *
 *   flat      a table like tributary.events before 0010: primary key
 *             (stream, partition, "offset"), index (stream, key, "offset")
 *   events    tributary.events: each row routed by LIST (stream), then
 *             RANGE (segment)
 *   stream    the stream's table: routed by RANGE (segment) only
 *   segment   the current segment's table itself (what the relay does)
 *
 * Each round copies `--events` fresh rows (the relay's COPY text, ~200-byte
 * jsonb, 8 partitions interleaved) into each target in turn, in one
 * transaction each, and reads the backend's CPU time (/proc, user + system)
 * around it: the server's work alone, without the client's or the wire's.
 * The targets alternate within every round so that the machine's noise
 * falls on all of them alike; the medians are printed.
 */
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { applyMigrations, readMigrations } from "@tributary/migrate";
import { copyChunks } from "../services/relay/src/internal/stream-writer.ts";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, startBenchServer } from "./support/bench-server.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { formatTable, progress } from "./support/report-table.ts";
import { median } from "./support/median.ts";

const usage = `npm run bench:copy-targets -- [flags]
${serverUsage}
  --events N   rows per COPY (default 100000)
  --rounds N   rounds, each copying into every target once (default 12)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  { events: { type: "string", default: "100000" }, rounds: { type: "string", default: "12" } },
  usage,
);
const N = positiveInt(values.events, "events");
const ROUNDS = positiveInt(values.rounds, "rounds");
const PARTITIONS = 8;
const CHUNK = 256 * 1024;
const DATA = JSON.stringify({ orderId: "o-000000001", customer: { id: "c-1234" }, items: [{ sku: "SKU-12", qty: 2, price: 12.5 }], placedAt: "2026-11-22T04:22:07.172Z" });

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
try {
  const server = await describeServer(sql);
  await applyMigrations(sql, readMigrations());
  await sql`select tributary.create_stream('orders', ${PARTITIONS})`;
  await sql`create table public.flat (like tributary.events including defaults)`;
  await sql`alter table public.flat drop column segment`;
  await sql`alter table public.flat add primary key (stream, partition, "offset")`;
  await sql`create index on public.flat (stream, key, "offset")`;
  const [names] = await sql<{ stream_table: string; segment_table: string }[]>`
    select format('tributary.%I', s.events_table) as stream_table, format('tributary.%I', g.table_name) as segment_table
      from tributary.streams s join tributary.segments g on g.stream = s.name and g.segment = 0 where s.name = 'orders'`;
  const [backend] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
  const pid = backend!.pid;
  const clockTicksMs = 10; // USER_HZ 100
  const backendCpuMs = (): number => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * clockTicksMs;
  };

  const targets = [
    { name: "flat", table: "public.flat", segment: false, what: "a flat table, as before 0010" },
    { name: "events", table: "tributary.events", segment: true, what: "tributary.events (LIST, then RANGE)" },
    { name: "stream", table: names!.stream_table, segment: true, what: "the stream's table (RANGE)" },
    { name: "segment", table: names!.segment_table, segment: true, what: "the segment's table (the relay)" },
  ];
  const offsets = new Map<string, number>();
  function rows(target: string, withSegment: boolean): Buffer {
    const base = offsets.get(target) ?? 0;
    offsets.set(target, base + N / PARTITIONS);
    const lines: string[] = [];
    for (let i = 0; i < N; i++) {
      const offset = base + Math.floor(i / PARTITIONS);
      lines.push(`orders\t${i % PARTITIONS}\t${offset}\t${randomUUID()}\tk-${(i * 7919) % 10000}\tOrderPlaced\t${DATA}\t{"traceparent":"00-abc"}\t2026-12-01 00:00:00.123456+00${withSegment ? "\t0" : ""}\n`);
    }
    return Buffer.from(lines.join(""));
  }
  async function copy(table: string, data: Buffer, withSegment: boolean): Promise<number> {
    const columns = `stream, partition, "offset", id, key, type, data, headers, committed_at${withSegment ? ", segment" : ""}`;
    const before = backendCpuMs();
    const chunks: Buffer[] = [];
    for (let at = 0; at < data.length; at += CHUNK) chunks.push(data.subarray(at, at + CHUNK));
    await sql.begin((tx) => copyChunks(tx, `copy ${table} (${columns}) from stdin`, chunks));
    return backendCpuMs() - before;
  }

  const perEvent = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    progress(`round ${round + 1} of ${ROUNDS}`);
    // Rotated each round, so that no target always goes first.
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(round + k) % targets.length]!;
      // The three segmented targets end in the same segment: they share its offsets.
      const data = rows(t.segment ? "segmented" : "flat", t.segment);
      perEvent.get(t.name)!.push(((await copy(t.table, data, t.segment)) * 1000) / N);
    }
  }
  const flat = median(perEvent.get("flat")!);
  process.stdout.write(
    `\nCOPY targets: the server's CPU per row (${new Date().toISOString()})\n${server}\n` +
      `${ROUNDS} rounds of ${N.toLocaleString("en-US")} rows into each target; backend CPU µs per row, median (min–max)\n\n` +
      formatTable(["target", "µs/row", "÷ flat"], targets.map((t) => {
        const xs = perEvent.get(t.name)!;
        return [t.what, `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`, (median(xs) / flat).toFixed(2)];
      })) +
      `\n\nmachine: load average before ${loadBefore}, after ${loadAverage()}\n`,
  );
} catch (error) {
  process.stderr.write(`bench:copy-targets failed: ${(error as Error)?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
}
