/**
 * Appending from TypeScript: thin wrappers over the SQL API
 * (tributary.append / tributary.append_many), meant to run inside the
 * caller's postgres.js transaction so the events commit or roll back with the
 * business rows (the transactional outbox).
 */
import type { Sql, TransactionSql } from "postgres";
import { fromSqlApiError, TributaryInputError } from "./errors.ts";
import { jsonText } from "./json-text.ts";
import { withTraceHeaders } from "./trace-context.ts";

export interface AppendEvent {
  readonly stream: string;
  readonly key: string;
  readonly type: string;
  readonly data: unknown;
  readonly headers?: Record<string, string | number | boolean | null>;
}

/** A postgres.js transaction (or any `Sql`) to append through. */
export type Executor = TransactionSql | Sql;

/**
 * Checks what only JavaScript can get wrong (a missing field); every other
 * rule is enforced by the SQL API so all languages get the same answers.
 * `data: null` is the JSON value null; a missing `data` is an error.
 */
function checkShape(event: AppendEvent, where: string): void {
  for (const field of ["stream", "key", "type"] as const) {
    // null reaches SQL, which states the rule; undefined cannot be sent at all.
    if (event[field] === undefined) {
      throw new TributaryInputError(
        field === "stream" ? "INVALID_STREAM_NAME" : field === "key" ? "INVALID_KEY" : "INVALID_TYPE",
        `${where}: event ${field} is missing (a non-empty string is required)`,
      );
    }
  }
  if (event.data === undefined) {
    throw new TributaryInputError("INVALID_DATA", `${where}: event data is missing (use null for a JSON null) (stream ${event.stream})`);
  }
}

/**
 * Appends one event; returns its id. Visible in the stream once the
 * transaction commits. Inside an active OpenTelemetry span, the event's
 * headers carry its W3C trace context (traceparent, tracestate) unless
 * given (trace-context.ts).
 */
export async function append(tx: Executor, event: AppendEvent): Promise<string> {
  checkShape(event, "append");
  try {
    const [row] = await tx<{ id: string }[]>`
      select tributary.append(
        ${event.stream}, ${event.key}, ${event.type},
        ${jsonText(event.data)}::text::jsonb, ${jsonText(withTraceHeaders(event.headers) ?? {})}::text::jsonb) as id`;
    return row!.id;
  } catch (error) {
    throw fromSqlApiError(error);
  }
}

/** Appends several events in order with one round trip; returns their ids in the same order. */
export async function appendBatch(tx: Executor, events: readonly AppendEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  events.forEach((event, i) => checkShape(event, `appendBatch[${i}]`));
  // The active trace context is the same for every event of the call: injected once.
  const traced = withTraceHeaders({});
  try {
    const [row] = await tx<{ ids: string[] }[]>`
      select tributary.append_many(
        ${events.map((e) => e.stream)}::text[],
        ${events.map((e) => e.key)}::text[],
        ${events.map((e) => e.type)}::text[],
        ${events.map((e) => jsonText(e.data))}::text[]::jsonb[],
        ${events.map((e) => jsonText(traced === undefined || Object.keys(traced).length === 0 ? e.headers ?? {} : { ...traced, ...e.headers }))}::text[]::jsonb[]) as ids`;
    return row!.ids;
  } catch (error) {
    throw fromSqlApiError(error);
  }
}

/** Creates a stream with a fixed partition count (idempotent for the same count). */
export async function createStream(tx: Executor, name: string, partitions = 8): Promise<void> {
  if (!Number.isInteger(partitions)) {
    throw new TributaryInputError("INVALID_PARTITIONS", `invalid partition count ${partitions} for stream ${name}: use an integer from 1 to 10000`);
  }
  try {
    await tx`select tributary.create_stream(${name}, ${partitions}::int)`;
  } catch (error) {
    throw fromSqlApiError(error);
  }
}
