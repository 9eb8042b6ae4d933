/**
 * Queue administration: what an operator reads and changes from outside the
 * workers (`tributary queues`, `tributary status`), as group-admin.ts is for
 * groups. The verbs themselves (send, claim, deadLetters, redrive, …) are
 * queue.ts; the dead-letter reads and the redrive here are built on them.
 *
 * A message is, by the database's now() (docs/ARCHITECTURE.md invariant 10:
 * the database's clock, never a client's):
 *   in flight  locked_until > now()  (claimed; the claim has not expired)
 *   ready      visible_at <= now() and not in flight  (never claimed, retried, or its claim expired)
 *   delayed    visible_at >  now() and not in flight  (a delay, run_at or a nack's backoff)
 * A worker is live while its heartbeat (every 5 s, queue-worker.ts) is under
 * WORKER_ALIVE_SECONDS old: three missed beats.
 */
import type { Sql, TransactionSql } from "postgres";
import { fromSqlApiError } from "./errors.ts";
import { deadLetters, redrive, type DeadLetter } from "./queue.ts";
import { transaction } from "./connection/transaction.ts";

const WORKER_ALIVE_SECONDS = 15;

export interface QueueWorkerDescription {
  readonly worker: string;
  readonly concurrency: number;
  readonly inFlight: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly startedAt: Date;
  readonly heartbeatAt: Date;
  /** Acked per second from started_at to the last heartbeat; null before the first heartbeat. */
  readonly succeededPerSecond: number | null;
}

export interface QueueScheduleDescription {
  readonly name: string;
  readonly cron: string;
  readonly catchUp: string;
  readonly nextRunAt: Date;
  readonly lastRunAt: Date | null;
}

export interface QueueDescription {
  readonly queue: string;
  readonly fifo: boolean;
  readonly visibilityTimeoutSeconds: number;
  readonly maxDeliveries: number;
  readonly backoff: { readonly baseSeconds: number; readonly maxSeconds: number; readonly jitter: number };
  /** The stream that feeds the queue, if any. */
  readonly stream: string | null;
  /** The depth: messages a claim may take now. */
  readonly ready: number;
  readonly inFlight: number;
  readonly delayed: number;
  readonly dead: number;
  /** Seconds since the oldest ready message was sent (enqueued_at; a redriven message keeps its own). */
  readonly oldestReadyAgeSeconds: number | null;
  /** Workers with a heartbeat in the last 15 s. */
  readonly liveWorkers: number;
  /** Messages acked per second by the live workers together, each averaged over its life so far. */
  readonly succeededPerSecond: number | null;
  readonly workers: readonly QueueWorkerDescription[];
  /** Its cron schedules (tributary.schedule), the next one first. */
  readonly schedules: readonly QueueScheduleDescription[];
}

export interface QueueRedrive {
  readonly queue: string;
  readonly redriven: number;
  /** Of the ids given, those that were not dead letters of the queue (already redriven, or never dead). */
  readonly missing: readonly string[];
}

/** UNKNOWN_QUEUE (the SQL API's message) unless the queue exists. */
async function requireQueue(tx: TransactionSql, queue: string): Promise<void> {
  await tx`select 1 from tributary.queue_settings(${queue})`.catch((error: unknown) => {
    throw fromSqlApiError(error);
  });
}

/**
 * Every queue (or only `queue`, which must exist: UNKNOWN_QUEUE) with its
 * settings, its messages by state, its live workers and its schedules, read
 * in one snapshot.
 */
export async function describeQueues(sql: Sql, options: { queue?: string } = {}): Promise<QueueDescription[]> {
  const queue = options.queue ?? null;
  return transaction(sql, "isolation level repeatable read read only", async (tx) => {
    if (queue !== null) await requireQueue(tx, queue);
    const counts = await tx<{
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
    return counts.map((c): QueueDescription => ({
      queue: c.name,
      fifo: c.fifo,
      visibilityTimeoutSeconds: c.visibility,
      maxDeliveries: c.max_deliveries,
      backoff: { baseSeconds: c.backoff_base, maxSeconds: c.backoff_max, jitter: c.backoff_jitter },
      stream: c.stream,
      ready: Number(c.ready),
      inFlight: Number(c.in_flight),
      delayed: Number(c.delayed),
      dead: Number(c.dead),
      oldestReadyAgeSeconds: c.oldest_ready,
      liveWorkers: c.live_workers,
      succeededPerSecond: c.rate,
      workers: workers.filter((w) => w.queue === c.name).map((w) => ({
        worker: w.worker,
        concurrency: w.concurrency,
        inFlight: w.in_flight,
        succeeded: Number(w.succeeded),
        failed: Number(w.failed),
        startedAt: w.started_at,
        heartbeatAt: w.heartbeat_at,
        succeededPerSecond: w.rate,
      })),
      schedules: schedules.filter((s) => s.queue === c.name).map((s) => ({
        name: s.name, cron: s.cron, catchUp: s.catch_up, nextRunAt: s.next_run_at, lastRunAt: s.last_run_at,
      })),
    }));
  }) as Promise<QueueDescription[]>;
}

/**
 * A page of the queue's dead letters, oldest first (deadLetters), and how
 * many it has in all, in one snapshot. UNKNOWN_QUEUE if there is no such queue.
 */
export async function listDeadLetters<Payload = unknown>(
  sql: Sql,
  queue: string,
  options: { limit?: number } = {},
): Promise<{ total: number; deadLetters: Array<DeadLetter<Payload>> }> {
  return transaction(sql, "isolation level repeatable read read only", async (tx) => {
    await requireQueue(tx, queue);
    const [count] = await tx<{ n: string }[]>`select count(*)::text as n from tributary.queue_dead_letters where queue = ${queue}`;
    return { total: Number(count!.n), deadLetters: await deadLetters<Payload>(tx, queue, options) };
  }) as Promise<{ total: number; deadLetters: Array<DeadLetter<Payload>> }>;
}

/**
 * redrive() in one transaction, saying which of the ids given were not dead
 * letters of the queue. Without ids: every dead letter of the queue.
 */
export async function redriveDeadLetters(sql: Sql, queue: string, ids?: readonly string[]): Promise<QueueRedrive> {
  return transaction(sql, async (tx) => {
    await requireQueue(tx, queue);
    // Locked, so the ids found here are exactly the ones redrive() moves.
    const found = ids === undefined ? [] : await tx<{ id: string }[]>`
      select id::text from tributary.queue_dead_letters where queue = ${queue} and id = any (${[...ids]}::bigint[]) for update`;
    const redriven = await redrive(tx, queue, ids);
    const present = new Set(found.map((f) => BigInt(f.id)));
    const missing = ids === undefined ? [] : [...new Set(ids.map((id) => BigInt(id)))].filter((id) => !present.has(id)).map(String);
    return { queue, redriven, missing };
  }) as Promise<QueueRedrive>;
}
