/**
 * @tributary/client — append events inside your own PostgreSQL transaction.
 *
 *   import postgres from "postgres";
 *   import { append } from "@tributary/client";
 *   const sql = postgres(process.env.DATABASE_URL!);
 *   await sql.begin(async (tx) => {
 *     await tx`insert into orders ...`;
 *     await append(tx, { stream: "orders", key: orderId, type: "OrderPlaced", data: { total } });
 *   });
 */
export { append, appendBatch, createStream } from "./internal/append.ts";
export type { AppendEvent, Executor } from "./internal/append.ts";
export { TributaryInputError } from "./internal/errors.ts";
export type { AppendErrorCode } from "./internal/errors.ts";
export { partitionFor } from "@tributary/core";
export { jsonText } from "./internal/json-text.ts";
export { decodeRawEvent, readPartition, readRawPartition } from "./internal/events.ts";
export type { RawStreamEvent, StreamEvent } from "./internal/events.ts";
export { parseStartPosition, readKey, streamPartitions, tailPartition, tailStream, TributaryReadError } from "./internal/reader.ts";
export type { ReadErrorCode, StartPosition, TailOptions } from "./internal/reader.ts";
export { describeGroups, resetGroupOffsets, GroupAdminError } from "./internal/group-admin.ts";
export type { GroupAdminErrorCode, GroupDescription, GroupMemberDescription, GroupPartitionDescription, GroupReset, PartitionReset, ResetTarget } from "./internal/group-admin.ts";
export { consumer } from "./internal/consumer/consumer.ts";
export type { Consumer, ConsumerOptions, PartitionStatus } from "./internal/consumer/consumer.ts";
export type { EventBatchHandler, EventHandler, FailurePolicy, HandlerContext, RawEventBatchHandler } from "./internal/consumer/batch-handler.ts";
export { StaleGenerationError, commitOffsets } from "./internal/consumer/offsets.ts";
export type { OffsetCommit } from "./internal/consumer/offsets.ts";
export { Consumer as ConsumerService } from "./internal/consumer/consumer-effect.ts";
export { ack, ackBatch, claim, createQueue, deadLetters, extend, nack, redrive, release, send, TributaryQueueError } from "./internal/queue.ts";
export type { ClaimedMessage, DeadLetter, QueueErrorCode, QueueOptions, SendOptions } from "./internal/queue.ts";
export { work } from "./internal/queue-worker.ts";
export type { MessageHandler, QueueWorker, WorkerContext, WorkOptions } from "./internal/queue-worker.ts";
export { runScheduler } from "./internal/queue-scheduler.ts";
export type { Scheduler } from "./internal/queue-scheduler.ts";
export { watchJobs } from "./internal/job-watch.ts";
export type { JobState, JobStateChange, WatchOptions } from "./internal/job-watch.ts";
export { connectPostgres, pgClientConfig, sessionUsesTls } from "./internal/connection/connect.ts";
export type { PgClientConfig } from "./internal/connection/connect.ts";
export { transaction } from "./internal/connection/transaction.ts";
export { openSession, withSession } from "./internal/connection/session.ts";
export type { Session } from "./internal/connection/session.ts";
export { ConnectionClosedError } from "./internal/connection/closed-connection.ts";
export { DatabaseUrlError, parseDatabaseUrl, redactDatabaseUrl } from "./internal/connection/database-url.ts";
export type { DatabaseTarget, DatabaseUrlErrorCode, SslMode, TlsPolicy } from "./internal/connection/database-url.ts";
