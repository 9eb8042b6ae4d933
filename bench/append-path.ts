/**
 * npm run bench:append — the ways an append can reach the WAL, side by side
 * on one server: the transactional logical message (tributary.append, the
 * product, signed), the unsigned append of migration 0001 (what signing and
 * the limits table cost), the same message without PL/pgSQL validation (a
 * control), and an
 * outbox row with a consumer deleting relayed rows. For each: 4 concurrent
 * writers for ~10 s of single-event transactions, then of 100-event
 * transactions. Reports writer tx/s and events/s, WAL bytes per event (with
 * what the WAL is made of), and for the outbox its size after the run.
 *
 * Each phase starts right after a CHECKPOINT, so with --full-page-writes on
 * every phase pays the same first-touch full-page images.
 */
import postgres, { type Sql } from "postgres";
import { migrate } from "@tributary/migrate";
import { createStream } from "@tributary/client";
import { createUnsignedAppend, grantedWriterPath, logicalMessagePath, outboxPath, outboxSize, rawMessagePath, recreateOutbox, unsignedAppendPath, type AppendPath, type OutboxSize } from "./support/append-paths.ts";
import { grantedRoleUrl } from "./support/bench-roles.ts";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { currentWalLsn, describeServer, postmasterPid, startBenchServer, walBytesBetween } from "./support/bench-server.ts";
import { cpuBetween, cpuSnapshot, describeCpu, loadAverage, type CpuUse } from "./support/cpu-accounting.ts";
import { BENCH_PARTITIONS, BENCH_STREAMS, benchEvent } from "./support/event-payload.ts";
import { OutboxConsumer } from "./support/outbox-consumer.ts";
import { fmt, formatTable, progress } from "./support/report-table.ts";
import { describeComposition, enableWalInspect, walComposition } from "./support/wal-stats.ts";

const usage = `npm run bench:append -- [flags]
${serverUsage}
  --seconds N                   duration of each phase (default 10)
  --writers N                   concurrent writer connections (default 4)
  --rounds N                    repeat the whole comparison N times (default 1)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    seconds: { type: "string", default: "10" },
    writers: { type: "string", default: "4" },
    rounds: { type: "string", default: "1" },
  },
  usage,
);
const seconds = positiveInt(values.seconds, "seconds");
const writers = positiveInt(values.writers, "writers");
const rounds = positiveInt(values.rounds, "rounds");
const paths: AppendPath[] = [logicalMessagePath, grantedWriterPath, unsignedAppendPath, outboxPath, rawMessagePath];
const shapes = [1, 100];

interface PhaseResult {
  readonly path: AppendPath;
  readonly eventsPerTx: number;
  readonly transactions: number;
  readonly events: number;
  readonly writerSeconds: number;
  readonly walBytes: number;
  readonly composition: string;
  readonly outbox: OutboxSize | null;
  readonly consumerMaxBacklog: number;
  readonly cpu: CpuUse;
}

let nextEvent = 0;

async function runWriters(pool: Sql, path: AppendPath, eventsPerTx: number, consumer: OutboxConsumer | null) {
  let transactions = 0;
  let events = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < deadline) {
        const first = nextEvent;
        nextEvent += eventsPerTx;
        const batch = Array.from({ length: eventsPerTx }, (_, k) => benchEvent(first + k));
        const ids = await path.write(pool, batch);
        consumer?.committed(ids);
        transactions++;
        events += batch.length;
      }
    }),
  );
  return { transactions, events, writerSeconds: (performance.now() - started) / 1000 };
}

async function runPhase(url: string, admin: Sql, pmPid: number, walInspect: boolean, path: AppendPath, eventsPerTx: number): Promise<PhaseResult> {
  if (path.usesOutbox) await recreateOutbox(admin);
  await admin`checkpoint`;
  const pool = postgres(path.role ? writerUrl! : url, { max: writers, onnotice: () => {} });
  const consumerSql = path.usesOutbox ? postgres(url, { max: 1, onnotice: () => {} }) : null;
  const consumer = consumerSql ? new OutboxConsumer(consumerSql) : null;
  try {
    const startLsn = await currentWalLsn(admin);
    const before = cpuSnapshot(pmPid);
    consumer?.start();
    const written = await runWriters(pool, path, eventsPerTx, consumer);
    await consumer?.drain();
    const cpu = cpuBetween(before, cpuSnapshot(pmPid));
    const endLsn = await currentWalLsn(admin);
    const walBytes = await walBytesBetween(admin, startLsn, endLsn);
    const composition = walInspect ? describeComposition(await walComposition(admin, startLsn, endLsn), written.events) : "(pg_walinspect missing)";
    if (path.usesOutbox) await admin`analyze bench_outbox`;
    const outbox = path.usesOutbox ? await outboxSize(admin) : null;
    // Dropped now, so its autovacuum cannot land in (and add WAL to) a later phase.
    if (path.usesOutbox) await admin`drop table bench_outbox`;
    return { path, eventsPerTx, ...written, walBytes, composition, outbox, consumerMaxBacklog: consumer?.maxBacklog ?? 0, cpu };
  } finally {
    await pool.end({ timeout: 5 });
    await consumerSql?.end({ timeout: 5 });
  }
}

const loadBefore = loadAverage();
progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
let exitCode = 0;
let writerUrl: string | null = null;
try {
  const serverLine = await describeServer(admin);
  await migrate(admin, { slotName: "tributary", decoder: flags.decoder });
  for (const stream of BENCH_STREAMS) await createStream(admin, stream, BENCH_PARTITIONS);
  await createUnsignedAppend(admin);
  writerUrl = await grantedRoleUrl(admin, cluster.url, "bench_writer", BENCH_STREAMS);
  if (!writerUrl) {
    progress("no privilege model in this schema (before migration 0007): the granted-writer path is left out");
    paths.splice(paths.indexOf(grantedWriterPath), 1);
  }
  const walInspect = await enableWalInspect(admin);
  const results: PhaseResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const eventsPerTx of shapes) {
      for (const path of paths) {
        progress(`round ${round}: ${path.name}, ${eventsPerTx}-event transactions, ${writers} writers, ${seconds} s`);
        const result = await runPhase(cluster.url, admin, postmasterPid(cluster), walInspect, path, eventsPerTx);
        progress(`  ${fmt.int(result.events / result.writerSeconds)} events/s, ${fmt.int(result.walBytes / result.events)} WAL B/event`);
        results.push(result);
      }
    }
  }
  const rows = results.map((r) => [
    r.path.name,
    String(r.eventsPerTx),
    fmt.int(r.transactions / r.writerSeconds),
    fmt.int(r.events / r.writerSeconds),
    fmt.int(r.walBytes / r.events),
    r.composition,
    r.outbox
      ? `${fmt.mb(r.outbox.tableBytes)} + ${fmt.mb(r.outbox.indexBytes)} idx; ${fmt.int(r.outbox.liveRows)} live, ${fmt.int(r.outbox.deadRows)} dead; ${r.outbox.autovacuums} autovac; backlog ≤ ${fmt.int(r.consumerMaxBacklog)}`
      : "",
    describeCpu(r.cpu),
  ]);
  process.stdout.write(`\nAppend path benchmark (${new Date().toISOString()})\n`);
  process.stdout.write(`${serverLine}; ${writers} writers, ${seconds} s per phase, each transaction one autocommit statement; ~200 B data + 73 B headers per event\n`);
  process.stdout.write(
    formatTable(
      ["path", "events/tx", "writer tx/s", "events/s", "WAL B/event", "WAL composition, B/event", "outbox after run (table + index; rows; consumer)", "CPU (cores)"],
      rows,
      [0, 5, 6, 7],
    ) + "\n",
  );
  process.stdout.write(`machine: 2 cores; load average before ${loadBefore}, after ${loadAverage()}\n`);
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench:append failed: ${(error as Error)?.stack ?? error}\n${cluster.serverLog()}\n`);
} finally {
  await admin.end({ timeout: 5 });
  await cluster.destroy();
}
process.exit(exitCode);
