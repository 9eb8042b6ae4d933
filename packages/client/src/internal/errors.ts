/**
 * The client's errors: one family. Every error a caller can act on is a
 * TributaryError with a stable string `code` (postgres.js style), one
 * subclass per area, each with a closed set of codes. The database's own
 * errors (a lost connection, permission denied) come through as postgres.js
 * raised them; a SQL API rule (SQLSTATE 22023 with the rule as the
 * constraint name) becomes the area's error with the original as `cause`.
 *
 * Messages say what happened, why and what to do, in the API's terms (option
 * names, SQL functions), never a command line's flags: the CLI says the same
 * in its own terms (apps/cli cli-errors.ts).
 */

/** append, appendBatch, createStream: input the SQL API's rules refuse. */
export type InputErrorCode =
  | "INVALID_STREAM_NAME"
  | "INVALID_KEY"
  | "KEY_TOO_LARGE"
  | "INVALID_TYPE"
  | "TYPE_TOO_LARGE"
  | "INVALID_DATA"
  | "DATA_TOO_LARGE"
  | "DATA_TOO_DEEP"
  | "INVALID_HEADERS"
  | "HEADERS_TOO_LARGE"
  | "HEADERS_TOO_DEEP"
  | "INVALID_PARTITIONS"
  | "INVALID_BATCH"
  | "INVALID_SETTING";

/** Readers (tailStream, tailPartition, streamPartitions, parseStartPosition). */
export type ReadErrorCode = "UNKNOWN_STREAM" | "INVALID_PARTITION" | "INVALID_START" | "OFFSET_OUT_OF_RANGE";

/** Consumer groups: a member's commit after its partition moved, and group administration. */
export type GroupErrorCode =
  | "INVALID_GROUP_NAME"
  | "UNKNOWN_GROUP"
  | "UNKNOWN_STREAM"
  | "INVALID_RESET_TARGET"
  | "OFFSET_OUT_OF_RANGE"
  | "GROUP_HAS_LIVE_MEMBERS"
  | "STALE_GENERATION";

/** Queues: the SQL API's rules (migrations/0003_queues.sql). */
export type QueueErrorCode =
  | "UNKNOWN_QUEUE"
  | "INVALID_QUEUE_NAME"
  | "INVALID_OPTION"
  | "INVALID_PAYLOAD"
  | "INVALID_WORKER"
  | "STALE_RECEIPT";

/**
 * A database URL, or a file it names (root certificate, password file), that
 * cannot be used; or a query not sent because its transaction's or session's
 * connection had closed (CONNECTION_CLOSED, the code postgres.js gives the
 * same event).
 */
export type ConnectionErrorCode = "INVALID_URL" | "INVALID_SSLMODE" | "UNREADABLE_FILE" | "NO_ROOT_CERT" | "PASSFILE_PERMISSIONS" | "CONNECTION_CLOSED";

export type TributaryErrorCode = InputErrorCode | ReadErrorCode | GroupErrorCode | QueueErrorCode | ConnectionErrorCode;

export abstract class TributaryError<Code extends TributaryErrorCode = TributaryErrorCode> extends Error {
  abstract override readonly name: string;
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class TributaryInputError extends TributaryError<InputErrorCode> {
  override readonly name = "TributaryInputError";
}

export class TributaryReadError extends TributaryError<ReadErrorCode> {
  override readonly name = "TributaryReadError";
}

export class TributaryGroupError extends TributaryError<GroupErrorCode> {
  override readonly name = "TributaryGroupError";
}

export class TributaryQueueError extends TributaryError<QueueErrorCode> {
  override readonly name = "TributaryQueueError";
}

export class TributaryConnectionError extends TributaryError<ConnectionErrorCode> {
  override readonly name = "TributaryConnectionError";
}

/** The SQL API's rules by constraint name (README "SQL API"). */
const sqlRules: Record<string, { readonly area: "input"; readonly code: InputErrorCode } | { readonly area: "queue"; readonly code: QueueErrorCode }> = {
  tributary_stream_name: { area: "input", code: "INVALID_STREAM_NAME" },
  tributary_key: { area: "input", code: "INVALID_KEY" },
  tributary_key_size: { area: "input", code: "KEY_TOO_LARGE" },
  tributary_type: { area: "input", code: "INVALID_TYPE" },
  tributary_type_size: { area: "input", code: "TYPE_TOO_LARGE" },
  tributary_data: { area: "input", code: "INVALID_DATA" },
  tributary_data_size: { area: "input", code: "DATA_TOO_LARGE" },
  tributary_data_depth: { area: "input", code: "DATA_TOO_DEEP" },
  tributary_headers: { area: "input", code: "INVALID_HEADERS" },
  tributary_headers_size: { area: "input", code: "HEADERS_TOO_LARGE" },
  tributary_headers_depth: { area: "input", code: "HEADERS_TOO_DEEP" },
  tributary_partitions: { area: "input", code: "INVALID_PARTITIONS" },
  tributary_batch_shape: { area: "input", code: "INVALID_BATCH" },
  tributary_limit: { area: "input", code: "INVALID_SETTING" },
  tributary_queue_unknown: { area: "queue", code: "UNKNOWN_QUEUE" },
  tributary_queue_name: { area: "queue", code: "INVALID_QUEUE_NAME" },
  tributary_queue_option: { area: "queue", code: "INVALID_OPTION" },
  tributary_queue_payload: { area: "queue", code: "INVALID_PAYLOAD" },
  tributary_queue_worker: { area: "queue", code: "INVALID_WORKER" },
  tributary_queue_stale_receipt: { area: "queue", code: "STALE_RECEIPT" },
};

/**
 * A PostgreSQL error raised by one of the SQL API's rules as the area's
 * error (the server's message and hint, the original as `cause`); any other
 * error unchanged.
 */
export function fromSqlApiError(error: unknown): unknown {
  const e = error as { code?: string; constraint_name?: string; message?: string; hint?: string } | null;
  const rule = e?.code === "22023" && e.constraint_name && Object.hasOwn(sqlRules, e.constraint_name) ? sqlRules[e.constraint_name] : undefined;
  if (!rule) return error;
  const message = e!.hint ? `${e!.message} (${e!.hint})` : e!.message ?? rule.code;
  return rule.area === "input"
    ? new TributaryInputError(rule.code, message, { cause: error })
    : new TributaryQueueError(rule.code, message, { cause: error });
}
