/**
 * A queue worker: claims messages in batches, runs the handler on up to
 * `concurrency` of them at once, acks on success and nacks (with the queue's
 * backoff) on failure; keeps long handlers' claims alive with extend().
 *
 * Wake-ups: send(), nack() and ack() of a FIFO message NOTIFY
 * tributary_queue with the queue's name, so an idle worker claims within
 * milliseconds; `pollIntervalMs` (default 1 s) covers delayed messages coming
 * due and missed notifications. No busy loop: an empty claim waits.
 *
 * stop(): no new claims; handlers in flight get `gracefulMs` to finish (and
 * are acked or nacked as usual); what is still running then is released with
 * a nack without delay, so another worker can take it at once.
 *
 * The worker registers in tributary.queue_workers and heartbeats its counts.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Sql } from "postgres";
import { ack, claim, extend, nack, type ClaimedMessage } from "./queue.ts";
import { feedQueue } from "./queue-feeder.ts";

export interface WorkerContext {
  /** Aborted when the worker stops and the grace period ends: the message will be released. */
  readonly signal: AbortSignal;
  readonly worker: string;
}

export type MessageHandler<Payload> = (message: ClaimedMessage<Payload>, context: WorkerContext) => unknown;

export interface WorkOptions {
  /** Messages handled at once (default 8). */
  readonly concurrency?: number;
  /** Messages per claim (default: the free slots, at most `concurrency`). */
  readonly batch?: number;
  /** Claim visibility in seconds (default: the queue's visibility timeout). */
  readonly visibilitySeconds?: number;
  /** Extend a running handler's claim this often (default: every third of the visibility, or 10 s). */
  readonly extendEveryMs?: number;
  readonly pollIntervalMs?: number;
  /** How long stop() lets handlers in flight finish (default 10 s). */
  readonly gracefulMs?: number;
  readonly worker?: string;
  /** On a stream-fed queue, also run a feeder (default true; feeders share the stream's partitions). */
  readonly feed?: boolean;
  readonly log?: (message: string) => void;
}

export interface QueueWorker {
  readonly worker: string;
  /** Settles when the worker has stopped. */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

export async function work<Payload = unknown>(sql: Sql, queue: string, handler: MessageHandler<Payload>, options: WorkOptions = {}): Promise<QueueWorker> {
  const worker = options.worker ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const concurrency = options.concurrency ?? 8;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const log = options.log ?? ((m: string) => console.error(`[tributary worker ${queue}] ${m}`));
  const [settings] = await sql<{ visibility: number; stream: string | null }[]>`
    select extract(epoch from visibility_timeout)::float8 as visibility, stream from tributary.queue_settings(${queue})`;
  const visibilitySeconds = options.visibilitySeconds ?? settings!.visibility;
  const extendEveryMs = options.extendEveryMs ?? Math.max(100, Math.min(10_000, (visibilitySeconds * 1000) / 3));

  await sql`
    insert into tributary.queue_workers (worker, queue, concurrency) values (${worker}, ${queue}, ${concurrency})
    on conflict (queue, worker) do update set started_at = now(), heartbeat_at = now(), concurrency = excluded.concurrency`;

  const feeder = settings!.stream && options.feed !== false ? await feedQueue(sql, queue, settings!.stream, { log }) : null;
  const running = new Map<string, AbortController>();
  const counts = { succeeded: 0, failed: 0 };
  let stopping = false;
  let wake: (() => void) | null = null;
  const wakeUp = () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  const listener = await sql.listen("tributary_queue", (payload) => {
    if (payload === queue) wakeUp();
  });
  const heartbeat = setInterval(() => {
    void sql`
      update tributary.queue_workers
         set heartbeat_at = now(), in_flight = ${running.size}, succeeded = ${counts.succeeded}, failed = ${counts.failed}
       where queue = ${queue} and worker = ${worker}`.catch(() => undefined);
  }, 5_000);
  heartbeat.unref();

  // Acks of handlers that finished while a batch ack was on the wire go out together
  // in the next one: one statement (one transaction) for many messages.
  let ackQueue: Array<{ receipt: string; done: (error?: unknown) => void }> = [];
  let acking = false;
  const flushAcks = async () => {
    if (acking) return;
    acking = true;
    try {
      while (ackQueue.length > 0) {
        const batch = ackQueue;
        ackQueue = [];
        try {
          if (batch.length === 1) await ack(sql, queue, batch[0]!.receipt);
          else await sql`select tributary.ack(${queue}, r) from unnest(${batch.map((b) => b.receipt)}::uuid[]) r`;
          for (const b of batch) b.done();
        } catch {
          // One stale receipt fails the whole statement: ack one by one to settle each alone.
          for (const b of batch) await ack(sql, queue, b.receipt).then(() => b.done(), (e: unknown) => b.done(e));
        }
      }
    } finally {
      acking = false;
    }
  };
  const batchedAck = (receipt: string) =>
    new Promise<void>((resolve, reject) => {
      ackQueue.push({ receipt, done: (error) => (error ? reject(error) : resolve()) });
      void flushAcks();
    });

  const acksInFlight = new Set<Promise<void>>();
  const handle = async (message: ClaimedMessage<Payload>) => {
    const abort = new AbortController();
    running.set(message.receipt, abort);
    const keepAlive = setInterval(() => {
      void extend(sql, queue, message.receipt, visibilitySeconds).catch(() => undefined);
    }, extendEveryMs);
    try {
      await handler(message, { signal: abort.signal, worker });
      clearInterval(keepAlive);
      // The handler is done: its slot is free for the next claim while the ack is on the wire.
      running.delete(message.receipt);
      wakeUp();
      const acked = batchedAck(message.receipt);
      acksInFlight.add(acked);
      try {
        await acked;
      } finally {
        acksInFlight.delete(acked);
      }
      counts.succeeded++;
    } catch (error) {
      clearInterval(keepAlive);
      counts.failed++;
      if (abort.signal.aborted) return; // released by stop()
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      await nack(sql, queue, message.receipt, { error: text.slice(0, 2000) }).catch((e: unknown) => {
        log(`nack of message ${message.id} failed (${(e as Error).message}); its claim will expire instead`);
      });
    } finally {
      clearInterval(keepAlive);
      running.delete(message.receipt);
      wakeUp();
    }
  };

  // Claim when half the slots are free, not for every slot that frees: one claim
  // statement for several messages (a claim costs about as much as four acks).
  const refill = Math.max(1, Math.ceil(Math.min(concurrency, options.batch ?? concurrency) / 2));
  const loop = (async () => {
    while (!stopping) {
      const free = concurrency - running.size;
      let claimed: Array<ClaimedMessage<Payload>> = [];
      if (free >= refill) {
        try {
          claimed = await claim<Payload>(sql, queue, worker, { max: Math.min(free, options.batch ?? free), visibilitySeconds });
        } catch (error) {
          log(`claim failed (${(error as Error).message}); retrying`);
        }
      }
      for (const message of claimed) void handle(message);
      if (claimed.length === 0 || concurrency - running.size < refill) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(wakeUp, pollIntervalMs).unref();
        });
      }
    }
  })();

  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      stopping = true;
      wakeUp();
      await feeder?.stop().catch(() => undefined);
      await loop;
      const deadline = Date.now() + (options.gracefulMs ?? 10_000);
      while ((running.size > 0 || acksInFlight.size > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Still running after the grace period: give them back now rather than at expiry.
      await Promise.all([...running.entries()].map(async ([receipt, abort]) => {
        abort.abort();
        await nack(sql, queue, receipt, { error: "worker stopped", delaySeconds: 0 }).catch(() => undefined);
      }));
      clearInterval(heartbeat);
      await listener.unlisten().catch(() => undefined);
      await sql`delete from tributary.queue_workers where queue = ${queue} and worker = ${worker}`.catch(() => undefined);
    })();
    return stopped;
  };
  const done = loop.then(() => stopped ?? undefined).then(() => undefined);
  return { worker, done, stop };
}
