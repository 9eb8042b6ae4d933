/**
 * Queues from TypeScript: thin wrappers over the SQL API (migrations/0003_queues.sql,
 * 0004_queue_claims_in_place.sql),
 * usable with a postgres.js `Sql` or inside a transaction (send() commits or
 * rolls back with the caller's business rows). The SQL API enforces every rule
 * and names it; errors come back as TributaryQueueError with a stable code.
 */
import type { Sql, TransactionSql } from "postgres";
import { fromSqlApiError } from "./errors.ts";
import { jsonText } from "./json-text.ts";
import { withTraceHeaders } from "./trace-context.ts";

export type QueueExecutor = Sql | TransactionSql;

export interface QueueOptions {
  /** Seconds (number) or a PostgreSQL interval ("5 minutes"). Default 30 s. */
  readonly visibilityTimeout?: number | string;
  /** Deliveries (failures or expiries) before the dead letters. Default 5. */
  readonly maxDeliveries?: number;
  /** Retry delay: base · 2^(delivery-1), capped at max, ± jitter. Defaults 1 s, 5 min, 0.2. */
  readonly backoff?: { readonly base?: number | string; readonly max?: number | string; readonly jitter?: number };
  /** Messages sharing a key are never in flight together and are delivered in send order. */
  readonly fifo?: boolean;
  /** Feed the queue from this stream: every event becomes a message. */
  readonly stream?: string;
  /** NOTIFY every job state change for watchers (watchJobs, tributary jobs). Default false. */
  readonly notifyStates?: boolean;
}

export interface SendOptions {
  /** Seconds or an interval: not delivered before now() + delay. */
  readonly delay?: number | string;
  /** Not delivered before this time. */
  readonly runAt?: Date;
  /** The FIFO group (required on FIFO queues). */
  readonly key?: string;
  /** A second send with the same dedupe key while the first is pending returns the first id. */
  readonly dedupeKey?: string;
  /**
   * Text headers handed to the worker with the message (migration 0014). A
   * send inside an active span adds its W3C trace context (`traceparent`,
   * `tracestate`), unless given here.
   */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ClaimedMessage<Payload = unknown> {
  readonly id: string;
  readonly receipt: string;
  readonly payload: Payload;
  readonly key: string | null;
  /** This delivery's number, from 1. */
  readonly deliveries: number;
  readonly enqueuedAt: Date;
  /** The claim expires then unless acked, nacked or extended. */
  readonly visibleUntil: Date;
  /** The headers it was sent with ({} when none). */
  readonly headers: Readonly<Record<string, string>>;
}

async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw fromSqlApiError(error);
  }
}

const interval = (value: number | string | undefined) => (value === undefined ? undefined : value);

export async function createQueue(sql: QueueExecutor, name: string, options: QueueOptions = {}): Promise<void> {
  const json: Record<string, unknown> = {};
  if (options.visibilityTimeout !== undefined) json.visibility_timeout = options.visibilityTimeout;
  if (options.maxDeliveries !== undefined) json.max_deliveries = options.maxDeliveries;
  if (options.fifo !== undefined) json.fifo = options.fifo;
  if (options.stream !== undefined) json.stream = options.stream;
  if (options.notifyStates !== undefined) json.notify_states = options.notifyStates;
  if (options.backoff) json.backoff = { base: interval(options.backoff.base), max: interval(options.backoff.max), jitter: options.backoff.jitter };
  await call(() => sql`select tributary.create_queue(${name}, ${JSON.stringify(json)}::text::jsonb)`);
}

/** send()'s options as the SQL API names them; headers only when there are some. */
function sendOptionsJson(options: SendOptions, trace: Readonly<Record<string, string>>): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  if (options.delay !== undefined) json.delay = options.delay;
  if (options.runAt !== undefined) json.run_at = options.runAt.toISOString();
  if (options.key !== undefined) json.key = options.key;
  if (options.dedupeKey !== undefined) json.dedupe_key = options.dedupeKey;
  // Only when there are some: a send without headers works on a database before migration 0014.
  const headers = { ...trace, ...options.headers };
  if (Object.keys(headers).length > 0) json.headers = headers;
  return json;
}

/** Enqueues a message; returns its id. Inside a transaction it commits or rolls back with it. */
export async function send(sql: QueueExecutor, queue: string, payload: unknown, options: SendOptions = {}): Promise<string> {
  const json = sendOptionsJson(options, withTraceHeaders<string>({}) ?? {});
  const [row] = await call(() => sql<{ id: string }[]>`
    select tributary.send(${queue}, ${jsonText(payload ?? null)}::text::jsonb, ${JSON.stringify(json)}::text::jsonb)::text as id`);
  return row!.id;
}

/** One message of sendBatch: its payload and send()'s options. */
export interface BatchMessage<Payload = unknown> extends SendOptions {
  readonly payload: Payload;
}

/**
 * Enqueues many messages in one set-based statement (tributary.send_batch,
 * migration 0015); returns their ids in the order given. All or nothing, as
 * one send is: a message that breaks a rule raises TributaryQueueError naming
 * it ("send_batch message 7 of 1000: ..."), and none of the batch is queued.
 * Each message carries the active trace context, as send() gives it.
 */
export async function sendBatch<Payload = unknown>(sql: QueueExecutor, queue: string, messages: ReadonlyArray<BatchMessage<Payload>>): Promise<string[]> {
  if (messages.length === 0) return [];
  const trace = withTraceHeaders<string>({}) ?? {};
  const text = jsonText(messages.map((m) => ({ payload: m.payload ?? null, ...sendOptionsJson(m, trace) })));
  const [row] = await call(() => sql<{ ids: string[] }[]>`select tributary.send_batch(${queue}, ${text}::text::jsonb)::text[] as ids`);
  return row!.ids;
}

/** Claims up to `max` visible messages for `worker` (FOR UPDATE SKIP LOCKED; FIFO-safe). */
export async function claim<Payload = unknown>(
  sql: QueueExecutor,
  queue: string,
  worker: string,
  options: { max?: number; visibilitySeconds?: number } = {},
): Promise<Array<ClaimedMessage<Payload>>> {
  const visibility = options.visibilitySeconds === undefined ? null : `${options.visibilitySeconds} seconds`;
  const rows = await call(() => sql<{ id: string; receipt: string; payload: Payload; key: string | null; deliveries: number; enqueued_at: Date; visible_until: Date; headers: Record<string, string> }[]>`
    select id::text, receipt::text, payload, key, deliveries, enqueued_at, visible_until, headers
      from tributary.claim(${queue}, ${worker}, ${options.max ?? 1}, ${visibility}::interval)`);
  return rows.map((r) => ({
    id: r.id, receipt: r.receipt, payload: r.payload, key: r.key, deliveries: r.deliveries, enqueuedAt: r.enqueued_at, visibleUntil: r.visible_until,
    headers: r.headers ?? {},
  }));
}

export async function ack(sql: QueueExecutor, queue: string, receipt: string): Promise<void> {
  await call(() => sql`select tributary.ack(${queue}, ${receipt}::uuid)`);
}

/**
 * Acknowledges many messages in one statement; returns the receipts it
 * acknowledged. A receipt left out was stale (see ack()).
 */
export async function ackBatch(sql: QueueExecutor, queue: string, receipts: readonly string[]): Promise<string[]> {
  if (receipts.length === 0) return [];
  const rows = await call(() => sql<{ receipt: string }[]>`select r::text as receipt from tributary.ack_batch(${queue}, ${[...receipts]}::uuid[]) r`);
  return rows.map((r) => r.receipt);
}

/**
 * Gives claimed messages back untouched: claimable again at once, and the
 * claim does not count as a delivery. Returns how many were given back.
 */
export async function release(sql: QueueExecutor, queue: string, receipts: readonly string[]): Promise<number> {
  if (receipts.length === 0) return 0;
  const [row] = await call(() => sql<{ n: number }[]>`select tributary.release(${queue}, ${[...receipts]}::uuid[]) as n`);
  return row!.n;
}

/** Gives the message back: visible again after `delaySeconds` (default: the queue's backoff), or to the dead letters on its last delivery. */
export async function nack(sql: QueueExecutor, queue: string, receipt: string, options: { error?: string; delaySeconds?: number } = {}): Promise<void> {
  const delay = options.delaySeconds === undefined ? null : `${options.delaySeconds} seconds`;
  await call(() => sql`select tributary.nack(${queue}, ${receipt}::uuid, ${options.error ?? null}, ${delay}::interval)`);
}

/** Keeps a claim for `seconds` more from now; returns the new expiry. */
export async function extend(sql: QueueExecutor, queue: string, receipt: string, seconds: number): Promise<Date> {
  const [row] = await call(() => sql<{ until: Date }[]>`select tributary.extend(${queue}, ${receipt}::uuid, ${`${seconds} seconds`}::interval) as until`);
  return row!.until;
}

export interface DeadLetter<Payload = unknown> {
  readonly id: string;
  readonly key: string | null;
  readonly payload: Payload;
  readonly enqueuedAt: Date;
  readonly deadAt: Date;
  readonly deliveries: number;
  readonly lastError: string | null;
  readonly history: Array<{ at: string; worker: string | null; error: string | null }>;
  /** The headers it was sent with ({} when none). */
  readonly headers: Readonly<Record<string, string>>;
}

export async function deadLetters<Payload = unknown>(sql: QueueExecutor, queue: string, options: { limit?: number } = {}): Promise<Array<DeadLetter<Payload>>> {
  const rows = await sql<{ id: string; key: string | null; payload: Payload; enqueued_at: Date; dead_at: Date; deliveries: number; last_error: string | null; history: DeadLetter["history"]; headers: Record<string, string> }[]>`
    select id::text, key, payload, enqueued_at, dead_at, deliveries, last_error, history, headers
      from tributary.queue_dead_letters where queue = ${queue} order by id limit ${options.limit ?? 100}`;
  return rows.map((r) => ({
    id: r.id, key: r.key, payload: r.payload, enqueuedAt: r.enqueued_at, deadAt: r.dead_at, deliveries: r.deliveries, lastError: r.last_error, history: r.history, headers: r.headers,
  }));
}

/** Puts dead letters back into the queue (all, or the given ids) with their deliveries reset; returns how many. */
export async function redrive(sql: QueueExecutor, queue: string, ids?: readonly string[]): Promise<number> {
  const [row] = await call(() => sql<{ n: number }[]>`select tributary.redrive(${queue}, ${ids ? [...ids] : null}::bigint[]) as n`);
  return row!.n;
}
