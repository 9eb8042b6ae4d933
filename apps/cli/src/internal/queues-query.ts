/**
 * What `tributary queues` and `tributary status` read about queues
 * (migrations/0003_queues.sql). A message is, by the database's now():
 *   in flight  locked_until > now()  (claimed; the claim has not expired)
 *   ready      visible_at <= now() and not in flight  (never claimed, retried, or its claim expired)
 *   delayed    visible_at >  now() and not in flight  (a delay, run_at or a nack's backoff)
 * A worker is live while its heartbeat (every 5 s, packages/client
 * queue-worker.ts) is under WORKER_ALIVE_SECONDS old: three missed beats.
 */
import type { Sql, TransactionSql } from "postgres";
import { transaction } from "@tributary/client";

type Executor = Sql | TransactionSql;

export const WORKER_ALIVE_SECONDS = 15;

export interface QueueCounts {
  queue: string;
  fifo: boolean;
  visibilityTimeoutSeconds: number;
  maxDeliveries: number;
  backoff: { baseSeconds: number; maxSeconds: number; jitter: number };
  /** The stream that feeds the queue, if any. */
  stream: string | null;
  /** The depth: messages a claim may take now. */
  ready: number;
  inFlight: number;
  delayed: number;
  dead: number;
  /** Seconds since the oldest ready message was sent (enqueued_at; a redriven message keeps its own). */
  oldestReadyAgeSeconds: number | null;
  liveWorkers: number;
  /** Messages acked per second by the live workers together, each averaged over its life so far. */
  succeededPerSecond: number | null;
}

export interface QueueWorkerRow {
  worker: string;
  concurrency: number;
  inFlight: number;
  succeeded: number;
  failed: number;
  startedAt: Date;
  heartbeatAt: Date;
  /** Acked per second from started_at to the last heartbeat; null before the first heartbeat. */
  succeededPerSecond: number | null;
}

export interface QueueScheduleRow {
  name: string;
  cron: string;
  catchUp: string;
  nextRunAt: Date;
  lastRunAt: Date | null;
}

export type QueueDescription = QueueCounts & { workers: QueueWorkerRow[]; schedules: QueueScheduleRow[] };

export interface DeadLetterRow {
  id: number;
  key: string | null;
  deliveries: number;
  lastError: string | null;
  enqueuedAt: Date;
  deadAt: Date;
  payload: unknown;
  history: unknown;
}

/** Whether this database's schema has queues (migration 0003 applied). */
export async function hasQueues(sql: Executor): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.queues') is not null as ok`;
  return row!.ok;
}

/** Raises the SQL API's unknown-queue error (tributary_queue_unknown) unless the queue exists. */
export async function requireQueue(sql: Executor, queue: string): Promise<void> {
  await sql`select 1 from tributary.queue_settings(${queue})`;
}

/** Every queue (or one) with its settings and counts, by name. */
export async function readQueueCounts(sql: Executor, queue: string | null = null): Promise<QueueCounts[]> {
  const rows = await sql<{
    name: string; fifo: boolean; visibility: number; max_deliveries: number; backoff_base: number; backoff_max: number; backoff_jitter: number;
    stream: string | null; ready: string; in_flight: string; delayed: string; dead: string; oldest_ready: number | null;
    live_workers: number; rate: number | null;
  }[]>`
    select q.name, q.fifo, extract(epoch from q.visibility_timeout)::float8 as visibility, q.max_deliveries,
           extract(epoch from q.backoff_base)::float8 as backoff_base, extract(epoch from q.backoff_max)::float8 as backoff_max,
           q.backoff_jitter, q.stream,
           m.ready::text, m.in_flight::text, m.delayed::text,
           (select count(*) from tributary.queue_dead_letters d where d.queue = q.name)::text as dead,
           m.oldest_ready, w.live_workers, w.rate
      from tributary.queues q
      cross join lateral (
        select count(*) filter (where x.visible_at <= now() and not coalesce(x.locked_until > now(), false)) as ready,
               count(*) filter (where x.locked_until > now()) as in_flight,
               count(*) filter (where x.visible_at > now() and not coalesce(x.locked_until > now(), false)) as delayed,
               extract(epoch from now() - min(x.enqueued_at)
                 filter (where x.visible_at <= now() and not coalesce(x.locked_until > now(), false)))::float8 as oldest_ready
          from tributary.queue_messages x where x.queue = q.name) m
      cross join lateral (
        select count(*)::int as live_workers,
               sum(x.succeeded / extract(epoch from x.heartbeat_at - x.started_at))
                 filter (where x.heartbeat_at > x.started_at)::float8 as rate
          from tributary.queue_workers x
         where x.queue = q.name and x.heartbeat_at > now() - make_interval(secs => ${WORKER_ALIVE_SECONDS})) w
     where ${queue}::text is null or q.name = ${queue}
     order by q.name`;
  return rows.map((r) => ({
    queue: r.name,
    fifo: r.fifo,
    visibilityTimeoutSeconds: r.visibility,
    maxDeliveries: r.max_deliveries,
    backoff: { baseSeconds: r.backoff_base, maxSeconds: r.backoff_max, jitter: r.backoff_jitter },
    stream: r.stream,
    ready: Number(r.ready),
    inFlight: Number(r.in_flight),
    delayed: Number(r.delayed),
    dead: Number(r.dead),
    oldestReadyAgeSeconds: r.oldest_ready,
    liveWorkers: r.live_workers,
    succeededPerSecond: r.rate,
  }));
}

/** Queues with their live workers and schedules, read in one snapshot. */
export async function describeQueues(sql: Sql, queue: string | null = null): Promise<QueueDescription[]> {
  return transaction(sql, "isolation level repeatable read read only", async (tx) => {
    if (queue !== null) await requireQueue(tx, queue);
    const counts = await readQueueCounts(tx, queue);
    const workers = await tx<{
      queue: string; worker: string; concurrency: number; in_flight: number; succeeded: string; failed: string;
      started_at: Date; heartbeat_at: Date; rate: number | null;
    }[]>`
      select queue, worker, concurrency, in_flight, succeeded::text, failed::text, started_at, heartbeat_at,
             case when heartbeat_at > started_at
                  then (succeeded / extract(epoch from heartbeat_at - started_at))::float8 end as rate
        from tributary.queue_workers
       where heartbeat_at > now() - make_interval(secs => ${WORKER_ALIVE_SECONDS}) and (${queue}::text is null or queue = ${queue})
       order by queue, worker`;
    const schedules = await tx<{ queue: string; name: string; cron: string; catch_up: string; next_run_at: Date; last_run_at: Date | null }[]>`
      select queue, name, cron, catch_up, next_run_at, last_run_at
        from tributary.queue_schedules
       where ${queue}::text is null or queue = ${queue}
       order by queue, next_run_at, name`;
    return counts.map((c) => ({
      ...c,
      workers: workers.filter((w) => w.queue === c.queue).map((w) => ({
        worker: w.worker,
        concurrency: w.concurrency,
        inFlight: w.in_flight,
        succeeded: Number(w.succeeded),
        failed: Number(w.failed),
        startedAt: w.started_at,
        heartbeatAt: w.heartbeat_at,
        succeededPerSecond: w.rate,
      })),
      schedules: schedules.filter((s) => s.queue === c.queue).map((s) => ({
        name: s.name, cron: s.cron, catchUp: s.catch_up, nextRunAt: s.next_run_at, lastRunAt: s.last_run_at,
      })),
    }));
  });
}

/** The queue's dead letters, oldest first (by id), and how many there are in all. */
export async function readDeadLetters(sql: Sql, queue: string, limit: number): Promise<{ total: number; deadLetters: DeadLetterRow[] }> {
  return transaction(sql, "isolation level repeatable read read only", async (tx) => {
    await requireQueue(tx, queue);
    const [count] = await tx<{ n: string }[]>`select count(*)::text as n from tributary.queue_dead_letters where queue = ${queue}`;
    const rows = await tx<{
      id: string; key: string | null; deliveries: number; last_error: string | null; enqueued_at: Date; dead_at: Date; payload: unknown; history: unknown;
    }[]>`
      select id::text, key, deliveries, last_error, enqueued_at, dead_at, payload, history
        from tributary.queue_dead_letters where queue = ${queue} order by id limit ${limit}`;
    return {
      total: Number(count!.n),
      deadLetters: rows.map((r) => ({
        id: Number(r.id), key: r.key, deliveries: r.deliveries, lastError: r.last_error, enqueuedAt: r.enqueued_at, deadAt: r.dead_at,
        payload: r.payload, history: r.history,
      })),
    };
  });
}

export interface RedriveResult {
  queue: string;
  redriven: number;
  /** With ids given: those that were not dead letters of the queue (already redriven, or never dead). */
  missing: number[];
}

/** tributary.redrive(queue, ids): every dead letter of the queue, or the given ids, back into it. */
export async function redriveDeadLetters(sql: Sql, queue: string, ids: readonly string[] | null): Promise<RedriveResult> {
  return transaction(sql, async (tx) => {
    await requireQueue(tx, queue);
    // Locked, so the ids found here are exactly the ones redrive() moves.
    const found = ids === null ? [] : await tx<{ id: string }[]>`
      select id::text from tributary.queue_dead_letters where queue = ${queue} and id = any (${[...ids]}::bigint[]) for update`;
    const [row] = await tx<{ n: number }[]>`select tributary.redrive(${queue}, ${ids === null ? null : [...ids]}::bigint[]) as n`;
    const present = new Set(found.map((f) => BigInt(f.id)));
    const missing = ids === null ? [] : [...new Set(ids.map((id) => BigInt(id)))].filter((id) => !present.has(id)).map(Number);
    return { queue, redriven: row!.n, missing };
  });
}
