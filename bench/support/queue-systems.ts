/**
 * The three queue systems as the bench:queue driver sees them: each in its
 * own database on the same server, set up with its own migrations, and
 * reached through its own idiomatic enqueue API. The workers run elsewhere
 * (queue-worker-child.ts); here: create a queue, enqueue one job or a batch,
 * count what is not completed yet, and measure the job table.
 *
 *   Tributary        bulk: sendBatch() from @tributary/client (one set-based
 *                    tributary.send_batch statement); single: send()
 *   pg-boss          bulk: boss.insert(name, jobs); single: boss.send()
 *   graphile-worker  bulk: workerUtils.addJobs(specs); single: workerUtils.addJob()
 */
import postgres, { type Sql } from "postgres";
import { PgBoss } from "pg-boss";
import { makeWorkerUtils, type WorkerUtils } from "graphile-worker";
import { applyMigrations, readMigrations } from "@tributary/migrate";
import { createQueue, send, sendBatch } from "@tributary/client";
import { eventData } from "./event-payload.ts";
import type { QueueSystemName } from "./queue-process.ts";

/** ~200 bytes of JSON (the benchmark events' data) plus the job's sequence number. */
export function jobPayload(seq: number): { seq: number } & Record<string, unknown> {
  return { seq, ...(JSON.parse(eventData(seq)) as Record<string, unknown>) };
}

export interface TableSize {
  /** The table(s) measured. */
  readonly relation: string;
  /** pg_total_relation_size: heap + TOAST + indexes. */
  readonly totalBytes: number;
  readonly indexBytes: number;
  readonly liveTuples: number;
  readonly deadTuples: number;
  readonly autovacuums: number;
}

export interface QueueSystem {
  readonly name: QueueSystemName;
  readonly label: string;
  readonly databaseUrl: string;
  /** The driver's connection to this system's database (counts and sizes). */
  readonly sql: Sql;
  createQueue(queue: string): Promise<void>;
  enqueueBatch(queue: string, seqs: readonly number[]): Promise<void>;
  enqueueOne(queue: string, seq: number): Promise<void>;
  /** Jobs of the queue not completed yet. */
  remaining(queue: string): Promise<number>;
  tableSize(queue: string): Promise<TableSize>;
  close(): Promise<void>;
}

export const systemLabels: Record<QueueSystemName, string> = { tributary: "Tributary", pgboss: "pg-boss", graphile: "graphile-worker" };

async function createDatabase(adminSql: Sql, database: string): Promise<void> {
  await adminSql.unsafe(`drop database if exists ${database}`);
  await adminSql.unsafe(`create database ${database}`);
}

/** Size and vacuum counters of one table (or the sum over several). */
async function sizeOf(sql: Sql, relations: readonly string[]): Promise<TableSize> {
  const [row] = await sql<{ total: string; indexes: string; live: string; dead: string; autovacuums: string }[]>`
    select coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as total,
           coalesce(sum(pg_indexes_size(c.oid)), 0)::text as indexes,
           coalesce(sum(s.n_live_tup), 0)::text as live,
           coalesce(sum(s.n_dead_tup), 0)::text as dead,
           coalesce(sum(s.autovacuum_count), 0)::text as autovacuums
      from unnest(${relations as string[]}::text[]) r(name)
      join pg_class c on c.oid = r.name::regclass
      left join pg_stat_user_tables s on s.relid = c.oid`;
  return {
    relation: relations.join(" + "),
    totalBytes: Number(row!.total),
    indexBytes: Number(row!.indexes),
    liveTuples: Number(row!.live),
    deadTuples: Number(row!.dead),
    autovacuums: Number(row!.autovacuums),
  };
}

export interface SystemOptions {
  /** Tributary: another copy of migrations/ (to measure a proposed change). */
  readonly migrationsDir?: string;
}

export async function tributarySystem(adminSql: Sql, urlFor: (db: string) => string, options: SystemOptions = {}): Promise<QueueSystem> {
  await createDatabase(adminSql, "bench_tributary");
  const databaseUrl = urlFor("bench_tributary");
  const sql = postgres(databaseUrl, { max: 8, onnotice: () => {} });
  // The schema only: no replication slot (nothing here reads the WAL, and an idle slot would keep all of it).
  await applyMigrations(sql, readMigrations(options.migrationsDir));
  return {
    name: "tributary",
    label: systemLabels.tributary,
    databaseUrl,
    sql,
    createQueue: (queue) => createQueue(sql, queue),
    async enqueueBatch(queue, seqs) {
      await sendBatch(sql, queue, seqs.map((seq) => ({ payload: jobPayload(seq) })));
    },
    async enqueueOne(queue, seq) {
      await send(sql, queue, jobPayload(seq));
    },
    async remaining(queue) {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_messages where queue = ${queue}`;
      return row!.n;
    },
    tableSize: () => sizeOf(sql, ["tributary.queue_messages"]),
    close: () => sql.end({ timeout: 5 }),
  };
}

/**
 * pg-boss queues: `partition: true` (a table of its own: its size is the
 * queue's), `notify: true` (workers are woken by NOTIFY, the worker's
 * instance has useListenNotify), completed jobs deleted 1 s after completion
 * by the supervisor (deleteAfterSeconds 1, maintenance every 10 s).
 */
export async function pgbossSystem(adminSql: Sql, urlFor: (db: string) => string): Promise<QueueSystem> {
  await createDatabase(adminSql, "bench_pgboss");
  const databaseUrl = urlFor("bench_pgboss");
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const boss = new PgBoss({ connectionString: databaseUrl, application_name: "bench-queue-pgboss-producer", max: 8, supervise: false, schedule: false, migrate: true });
  boss.on("error", (e: Error) => process.stderr.write(`[pg-boss producer] ${e.message}\n`));
  await boss.start();
  const tableOf = async (queue: string) => {
    const [row] = await sql<{ table_name: string }[]>`select table_name from pgboss.queue where name = ${queue}`;
    return `pgboss.${row!.table_name}`;
  };
  return {
    name: "pgboss",
    label: systemLabels.pgboss,
    databaseUrl,
    sql,
    createQueue: (queue) => boss.createQueue(queue, { partition: true, notify: true, deleteAfterSeconds: 1 }),
    async enqueueBatch(queue, seqs) {
      await boss.insert(queue, seqs.map((seq) => ({ data: jobPayload(seq) })));
    },
    async enqueueOne(queue, seq) {
      await boss.send(queue, jobPayload(seq));
    },
    async remaining(queue) {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from pgboss.job where name = ${queue} and state in ('created', 'retry', 'active')`;
      return row!.n;
    },
    async tableSize(queue) {
      return sizeOf(sql, [await tableOf(queue)]);
    },
    async close() {
      await boss.stop({ graceful: false, timeout: 5_000 });
      await sql.end({ timeout: 5 });
    },
  };
}

export async function graphileSystem(adminSql: Sql, urlFor: (db: string) => string): Promise<QueueSystem> {
  await createDatabase(adminSql, "bench_graphile");
  const databaseUrl = urlFor("bench_graphile");
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const utils: WorkerUtils = await makeWorkerUtils({ connectionString: databaseUrl, maxPoolSize: 8 });
  await utils.migrate();
  return {
    name: "graphile",
    label: systemLabels.graphile,
    databaseUrl,
    sql,
    createQueue: async () => {}, // a task identifier needs no setup; jobs without a queue_name run in parallel
    async enqueueBatch(queue, seqs) {
      await utils.addJobs(seqs.map((seq) => ({ identifier: queue, payload: jobPayload(seq) })));
    },
    async enqueueOne(queue, seq) {
      await utils.addJob(queue, jobPayload(seq));
    },
    async remaining(queue) {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from graphile_worker._private_jobs j
          join graphile_worker._private_tasks t on t.id = j.task_id
         where t.identifier = ${queue}`;
      return row!.n;
    },
    tableSize: () => sizeOf(sql, ["graphile_worker._private_jobs"]),
    async close() {
      await utils.release();
      await sql.end({ timeout: 5 });
    },
  };
}
