/**
 * @tributary/client — append events inside your own PostgreSQL transaction,
 * read them back, consume them as a group, and run queues on them. What
 * reads or writes the database takes a postgres.js `sql` (or a transaction) first.
 *
 *   import postgres from "postgres";
 *   import { append } from "@tributary/client";
 *   const sql = postgres(process.env.DATABASE_URL!);
 *   await sql.begin(async (tx) => {
 *     await tx`insert into orders ...`;
 *     await append(tx, { stream: "orders", key: orderId, type: "OrderPlaced", data: { total } });
 *   });
 *
 * Protocol pieces the services and benchmarks build on are in
 * "@tributary/client/internals" (unstable).
 */

// Append (in the caller's transaction) and the partition a key goes to.
export { append, appendBatch, createStream } from "./internal/append.ts";
export type { AppendEvent, Executor } from "./internal/append.ts";
export { partitionFor } from "@tributary/core";
export { jsonText } from "./internal/json-text.ts";

// Read without a group: tail a stream or a partition, one key's history.
export { parseStartPosition, readKey, streamPartitions, tailPartition, tailStream } from "./internal/reader.ts";
export type { StartPosition, TailOptions } from "./internal/reader.ts";
export { eventTraceContext } from "./internal/trace-context.ts";
export { lowWatermarks } from "./internal/low-watermarks.ts";
export type { MissedEvents, OutOfRangePolicy } from "./internal/low-watermarks.ts";
export { decodeRawEvent } from "./internal/events.ts";
export type { RawStreamEvent, StreamEvent } from "./internal/events.ts";

// Consumer groups: members, and their administration from outside.
export { consumer } from "./internal/consumer/consumer.ts";
export type { Consumer, ConsumerOptions, PartitionStatus } from "./internal/consumer/consumer.ts";
export type { EventBatchHandler, EventHandler, FailurePolicy, HandlerContext, RawEventBatchHandler } from "./internal/consumer/batch-handler.ts";
export { Consumer as ConsumerService } from "./internal/consumer/consumer-effect.ts";
export { describeGroups, resetGroupOffsets } from "./internal/group-admin.ts";
export type { GroupDescription, GroupMemberDescription, GroupPartitionDescription, GroupReset, PartitionReset, ResetTarget } from "./internal/group-admin.ts";

// Queues: the SQL API's verbs, workers, cron, job states, and their administration.
export { ack, ackBatch, claim, createQueue, deadLetters, extend, nack, redrive, release, send, sendBatch } from "./internal/queue.ts";
export type { BatchMessage, ClaimedMessage, DeadLetter, QueueOptions, SendOptions } from "./internal/queue.ts";
export { describeQueues, listDeadLetters, redriveDeadLetters } from "./internal/queue-admin.ts";
export type { QueueDescription, QueueRedrive, QueueScheduleDescription, QueueWorkerDescription } from "./internal/queue-admin.ts";
export { work } from "./internal/queue-worker.ts";
export type { MessageHandler, QueueWorker, WorkerContext, WorkOptions } from "./internal/queue-worker.ts";
export { runScheduler } from "./internal/queue-scheduler.ts";
export type { Scheduler } from "./internal/queue-scheduler.ts";
export { watchJobs } from "./internal/job-watch.ts";
export type { JobState, JobStateChange, WatchOptions } from "./internal/job-watch.ts";

// Connecting: a postgres.js client for a libpq URL, TLS verified as libpq does (docs/ARCHITECTURE.md "Connections").
export { connectPostgres } from "./internal/connection/connect.ts";

// Errors: one family, a stable string code each, a closed set of codes per area.
export { TributaryConnectionError, TributaryError, TributaryGroupError, TributaryInputError, TributaryQueueError, TributaryReadError } from "./internal/errors.ts";
export type { ConnectionErrorCode, GroupErrorCode, InputErrorCode, QueueErrorCode, ReadErrorCode, TributaryErrorCode } from "./internal/errors.ts";

// Transactions and sessions that never write to a connection that closed (docs/ARCHITECTURE.md "Known traps").
export { transaction } from "./internal/connection/transaction.ts";
export { openSession, withSession } from "./internal/connection/session.ts";
export type { Session } from "./internal/connection/session.ts";
export { ConnectionClosedError } from "./internal/connection/closed-connection.ts";
