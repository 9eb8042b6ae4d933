/**
 * A queue worker: claims messages in batches, runs the handler on up to
 * `concurrency` of them at once, acks on success and nacks (with the queue's
 * backoff) on failure; keeps claims alive with extend() while they are held.
 *
 * Prefetch: the worker holds claimed messages beyond its running handlers,
 * so a finishing handler's slot is refilled at once from memory, not after a
 * claim's round trip; a claim is sent when half the room is free (one claim
 * statement for several messages). How many it holds adapts, up to
 * `prefetch`: it starts at `concurrency`, doubles whenever a slot sat idle
 * waiting for a claim while the queue had more, and shrinks by a tenth each
 * second that did not happen. Fast handlers get deep prefetch (one claim per
 * hundred messages); slow ones hold little, leaving the rest of the queue to
 * other workers. Held messages are in flight (their visibility runs, and is
 * extended, from the claim).
 * Acks of handlers that finish while an ack is on the wire go out together
 * in the next one (tributary.ack_batch).
 *
 * Wake-ups: send(), nack(), release() and ack() of a FIFO message NOTIFY
 * tributary_queue with the queue's name, so an idle worker claims within
 * milliseconds; `pollIntervalMs` (default 1 s) covers delayed messages coming
 * due and missed notifications. No busy loop: an empty claim waits.
 * A wake-up that comes while a claim is on the wire is kept, not dropped: the
 * claim may have read the queue before the commit that notified, so the loop
 * claims again instead of waiting for the poll.
 *
 * stop(): no new claims; held messages that never started are released (the
 * claim does not count as a delivery); handlers in flight get `gracefulMs`
 * to finish (and are acked or nacked as usual); what is still running then
 * is given back with a nack without delay, so another worker can take it at
 * once (that delivery counts: a handler that never ends must not loop forever).
 *
 * Traces: each handler call runs in a CONSUMER span `process <queue>`
 * (trace-context.ts), linked to the sender's context (the message's
 * headers); a stream-fed message's span links the producer of the event it
 * carries.
 *
 * The worker registers in tributary.queue_workers and heartbeats its counts.
 *
 * Churn: workers VACUUM the queue table once enough dead rows piled up, one
 * at a time across the database (queue-vacuum.ts); `vacuum: false` leaves it
 * to autovacuum.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Sql } from "postgres";
import type { Registry } from "prom-client";
import { QUEUE_CHANNEL } from "@tributary/core";
import { TributaryQueueError } from "./errors.ts";
import { ackBatch, extend, claim, nack, release, type ClaimedMessage } from "./queue.ts";
import { feedQueue } from "./queue-feeder.ts";
import { startQueueVacuum } from "./queue-vacuum.ts";
import { QueueWorkerMetrics } from "./queue-worker-metrics.ts";
import { inConsumerSpan, producerLink } from "./trace-context.ts";

export interface WorkerContext {
  /** Aborted when the worker stops and the grace period ends: the message will be released. */
  readonly signal: AbortSignal;
  readonly worker: string;
}

export type MessageHandler<Payload> = (message: ClaimedMessage<Payload>, context: WorkerContext) => unknown;

export interface WorkOptions {
  /** Messages handled at once (default 8). */
  readonly concurrency?: number;
  /** Messages per claim at most (default: the free room, concurrency + prefetch). */
  readonly batch?: number;
  /**
   * At most this many claimed messages held beyond the running handlers,
   * ready to start the moment a slot frees (default 256; 0 claims only for
   * free slots). The worker holds fewer when that keeps its slots busy.
   */
  readonly prefetch?: number;
  /** Claim visibility in seconds (default: the queue's visibility timeout). */
  readonly visibilitySeconds?: number;
  /** Extend a held message's claim this often (default: every third of the visibility, or 10 s). */
  readonly extendEveryMs?: number;
  readonly pollIntervalMs?: number;
  /** How long stop() lets handlers in flight finish (default 10 s). */
  readonly gracefulMs?: number;
  readonly worker?: string;
  /** On a stream-fed queue, also run a feeder (default true; feeders share the stream's partitions). */
  readonly feed?: boolean;
  /** VACUUM the queue table when dead rows pile up (default true; see queue-vacuum.ts for the thresholds). */
  readonly vacuum?: boolean | { readonly deadRows?: number; readonly checkEveryMs?: number };
  readonly log?: (message: string) => void;
  /** A prom-client registry to register the worker's metrics on (queue-worker-metrics.ts; README "Metrics"). None by default. */
  readonly metrics?: Registry;
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
  const prefetch = options.prefetch ?? 256;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`work(): concurrency must be a positive integer (got ${concurrency})`);
  if (!Number.isInteger(prefetch) || prefetch < 0) throw new TypeError(`work(): prefetch must be 0 or a positive integer (got ${prefetch})`);
  /** How many messages to hold beyond the running handlers now (see Prefetch above). */
  let depth = Math.min(prefetch, concurrency);
  let starvedAt = 0;
  let starved = false;
  const capacity = () => concurrency + depth;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const log = options.log ?? ((m: string) => console.error(`[tributary worker ${queue}] ${m}`));
  const [settings] = await sql<{ visibility: number; stream: string | null; max_deliveries: number }[]>`
    select extract(epoch from visibility_timeout)::float8 as visibility, stream, max_deliveries from tributary.queue_settings(${queue})`;
  const visibilitySeconds = options.visibilitySeconds ?? settings!.visibility;
  const extendEveryMs = options.extendEveryMs ?? Math.max(100, Math.min(10_000, (visibilitySeconds * 1000) / 3));

  await sql`
    insert into tributary.queue_workers (worker, queue, concurrency) values (${worker}, ${queue}, ${concurrency})
    on conflict (queue, worker) do update set started_at = now(), heartbeat_at = now(), concurrency = excluded.concurrency`;

  const fedBy = settings!.stream;
  const feeder = settings!.stream && options.feed !== false ? await feedQueue(sql, queue, settings!.stream, { log }) : null;
  const vacuum = options.vacuum === false ? null : await startQueueVacuum(sql, { ...(typeof options.vacuum === "object" ? options.vacuum : {}), log });
  /** Claimed, not started: oldest first. */
  let waiting: Array<Held<Payload>> = [];
  const running = new Map<string, Held<Payload>>();
  const counts = { succeeded: 0, failed: 0 };
  const metrics = options.metrics ? new QueueWorkerMetrics(options.metrics, queue, sql, () => running.size) : null;
  let stopping = false;
  /** Resolves the loop's wait; null while the loop is not waiting (claiming, or starting handlers). */
  let wake: (() => void) | null = null;
  /** A wake-up came while the loop was not waiting: its next wait returns at once. */
  let wokenMeanwhile = false;
  const wakeUp = () => {
    const resolve = wake;
    wake = null;
    if (resolve) resolve();
    else wokenMeanwhile = true;
  };
  // onlisten runs again when postgres.js re-listens on a new connection: what
  // was sent while the old one was down notified no one, so that is a wake-up too.
  const listener = await sql.listen(
    QUEUE_CHANNEL,
    (payload) => {
      if (payload === queue) wakeUp();
    },
    wakeUp,
  );
  const heartbeat = setInterval(() => {
    void sql`
      update tributary.queue_workers
         set heartbeat_at = now(), in_flight = ${running.size}, succeeded = ${counts.succeeded}, failed = ${counts.failed}
       where queue = ${queue} and worker = ${worker}`.catch(() => undefined);
  }, 5_000);
  heartbeat.unref();

  const hold = (message: ClaimedMessage<Payload>): Held<Payload> => ({ message, abort: new AbortController(), extendedAt: performance.now(), settled: false });
  // Keeps the claims of held messages alive: one timer for all of them, not one per message.
  const keepAlive = setInterval(() => {
    const due = performance.now() - extendEveryMs;
    for (const held of [...waiting, ...running.values()]) {
      if (held.settled || held.extendedAt > due) continue;
      held.extendedAt = performance.now();
      void extend(sql, queue, held.message.receipt, visibilitySeconds).catch(() => undefined);
    }
  }, Math.max(50, Math.floor(extendEveryMs / 4)));
  keepAlive.unref();

  // Acks of handlers that finished while an ack was on the wire go out together in the next one.
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
          const acked = new Set(await ackBatch(sql, queue, batch.map((b) => b.receipt)));
          for (const b of batch) {
            b.done(acked.has(b.receipt) ? undefined : new TributaryQueueError("STALE_RECEIPT", `receipt ${b.receipt} of queue '${queue}' is stale: its claim expired and it was claimed again, or it left the queue`));
          }
        } catch (error) {
          for (const b of batch) b.done(error);
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

  const settling = new Set<Promise<void>>();
  const handle = async (held: Held<Payload>) => {
    const { message, abort } = held;
    let failure: unknown = null;
    const startedAt = metrics ? performance.now() : 0;
    try {
      // The sender's context is in the message's headers; a stream-fed message's payload is the whole event, with the producer's in its headers.
      await inConsumerSpan(queue, () => ({
        attributes: {
          "messaging.system": "tributary",
          "messaging.message.id": message.id,
          "tributary.deliveries": message.deliveries,
          ...(fedBy ? { "tributary.stream": fedBy } : {}),
        },
        links: [producerLink(message.headers.traceparent === undefined && fedBy ? (message.payload as { headers?: unknown } | null)?.headers : message.headers)],
      }), async () => void (await handler(message, { signal: abort.signal, worker })));
    } catch (error) {
      failure = error ?? new Error("handler failed");
    }
    const seconds = metrics ? (performance.now() - startedAt) / 1000 : 0;
    held.settled = true;
    running.delete(message.receipt);
    if (abort.signal.aborted) return; // given back by stop()
    // The handler is done: its slot takes the next held message while the ack is on the wire.
    pump();
    if (failure === null) {
      await batchedAck(message.receipt).then(
        () => {
          counts.succeeded++;
          metrics?.settled("completed", seconds);
        },
        (error: unknown) => {
          counts.failed++;
          metrics?.settled("retried", seconds); // not acked: delivered again
          log(`ack of message ${message.id} failed (${(error as Error).message}); it will be delivered again`);
        },
      );
      return;
    }
    counts.failed++;
    const text = failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
    await nack(sql, queue, message.receipt, { error: text.slice(0, 2000) }).catch((e: unknown) => {
      log(`nack of message ${message.id} failed (${(e as Error).message}); its claim will expire instead`);
    });
    // Counted once the queue has it: retried after the backoff, or dead on its last delivery.
    metrics?.settled(message.deliveries >= settings!.max_deliveries ? "dead" : "retried", seconds);
  };
  const start = (held: Held<Payload>) => {
    running.set(held.message.receipt, held);
    const settled = handle(held).finally(() => {
      settling.delete(settled);
      wakeUp();
    });
    settling.add(settled);
  };
  /** Starts held messages while slots are free. */
  let queueHasMore = true;
  const pump = () => {
    while (running.size < concurrency && waiting.length > 0 && !stopping) start(waiting.shift()!);
    // A free slot and nothing held while the queue has more: the prefetch was too shallow.
    if (running.size < concurrency && waiting.length === 0 && queueHasMore) starved = true;
  };
  const adapt = () => {
    const now = Date.now();
    if (starved) {
      depth = Math.min(prefetch, Math.max(1, depth * 2));
      starved = false;
      starvedAt = now;
    } else if (now - starvedAt >= 1_000) {
      depth = Math.min(depth, Math.max(Math.min(prefetch, concurrency), Math.floor(depth * 0.9)));
      starvedAt = now;
    }
  };

  // Claim when half the room is free, not for every slot that frees: one claim
  // statement for several messages (a claim costs about as much as four acks).
  const refill = () => Math.max(1, Math.ceil(Math.min(capacity(), options.batch ?? capacity()) / 2));
  const room = () => capacity() - running.size - waiting.length;
  const loop = (async () => {
    while (!stopping) {
      let claimed = 0;
      // From here on a wake-up may be for a commit the claim below does not see.
      wokenMeanwhile = false;
      if (room() >= refill()) {
        try {
          const max = Math.min(room(), options.batch ?? capacity());
          const messages = await claim<Payload>(sql, queue, worker, { max, visibilitySeconds });
          claimed = messages.length;
          queueHasMore = claimed === max;
          adapt();
          for (const message of messages) waiting.push(hold(message));
          pump();
        } catch (error) {
          log(`claim failed (${(error as Error).message}); retrying`);
        }
      }
      if (stopping) break;
      if ((claimed === 0 || room() < refill()) && !wokenMeanwhile) {
        await new Promise<void>((resolve) => {
          const poll = setTimeout(wakeUp, pollIntervalMs);
          poll.unref();
          wake = () => {
            clearTimeout(poll);
            resolve();
          };
        });
      }
    }
  })();

  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      stopping = true;
      metrics?.close();
      wakeUp();
      await feeder?.stop().catch(() => undefined);
      await vacuum?.stop();
      await loop;
      // Held but never started: back to the queue, not counted as a delivery.
      const unstarted = waiting;
      waiting = [];
      for (const held of unstarted) held.settled = true;
      if (unstarted.length > 0) {
        await release(sql, queue, unstarted.map((h) => h.message.receipt)).catch((error: unknown) => {
          log(`release of ${unstarted.length} unstarted messages failed (${(error as Error).message}); their claims will expire instead`);
        });
      }
      const deadline = Date.now() + (options.gracefulMs ?? 10_000);
      while (settling.size > 0 && Date.now() < deadline) await Promise.race([...settling, new Promise((r) => setTimeout(r, 50))]);
      // Still running after the grace period: give them back now rather than at expiry.
      await Promise.all([...running.values()].map(async (held) => {
        held.abort.abort();
        held.settled = true;
        await nack(sql, queue, held.message.receipt, { error: "worker stopped", delaySeconds: 0 }).catch(() => undefined);
      }));
      clearInterval(heartbeat);
      clearInterval(keepAlive);
      await listener.unlisten().catch(() => undefined);
      await sql`delete from tributary.queue_workers where queue = ${queue} and worker = ${worker}`.catch(() => undefined);
    })();
    return stopped;
  };
  const done = loop.then(() => stopped ?? undefined).then(() => undefined);
  return { worker, done, stop };
}

/** A claimed message this worker holds: waiting for a slot, or running. */
interface Held<Payload> {
  readonly message: ClaimedMessage<Payload>;
  readonly abort: AbortController;
  /** When its claim was last made or extended (performance.now()). */
  extendedAt: number;
  /** Acked, nacked, released or given back: no more extends. */
  settled: boolean;
}
