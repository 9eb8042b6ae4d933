/**
 * Appending from TypeScript: thin wrappers over the SQL API
 * (tributary.append / tributary.append_many), meant to run inside the
 * caller's postgres.js transaction so the events commit or roll back with the
 * business rows (the transactional outbox).
 */
import type { JSONValue, Sql, TransactionSql } from "postgres";
import { translateError } from "./errors.ts";

export interface AppendEvent {
  readonly stream: string;
  readonly key: string;
  readonly type: string;
  readonly data: unknown;
  readonly headers?: Record<string, string | number | boolean | null>;
}

/** A postgres.js transaction (or any `Sql`) to append through. */
export type Executor = TransactionSql | Sql;

/** Appends one event; returns its id. Visible in the stream once the transaction commits. */
export async function append(tx: Executor, event: AppendEvent): Promise<string> {
  try {
    const [row] = await tx<{ id: string }[]>`
      select tributary.append(
        ${event.stream}, ${event.key}, ${event.type},
        ${tx.json(event.data as JSONValue)}, ${tx.json((event.headers ?? {}) as JSONValue)}) as id`;
    return row!.id;
  } catch (error) {
    throw translateError(error);
  }
}

/** Appends several events in order with one round trip; returns their ids in the same order. */
export async function appendBatch(tx: Executor, events: readonly AppendEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  try {
    const [row] = await tx<{ ids: string[] }[]>`
      select tributary.append_many(
        ${events.map((e) => e.stream)}::text[],
        ${events.map((e) => e.key)}::text[],
        ${events.map((e) => e.type)}::text[],
        ${events.map((e) => JSON.stringify(e.data ?? null))}::text[]::jsonb[],
        ${events.map((e) => JSON.stringify(e.headers ?? {}))}::text[]::jsonb[]) as ids`;
    return row!.ids;
  } catch (error) {
    throw translateError(error);
  }
}

/** Creates a stream with a fixed partition count (idempotent for the same count). */
export async function createStream(tx: Executor, name: string, partitions = 8): Promise<void> {
  try {
    await tx`select tributary.create_stream(${name}, ${partitions}::int)`;
  } catch (error) {
    throw translateError(error);
  }
}
