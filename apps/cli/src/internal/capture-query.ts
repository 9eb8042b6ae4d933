/**
 * What `tributary capture` and `tributary status` read and call of table
 * capture (migrations/0009_table_capture.sql): the SQL API's capture(),
 * uncapture() and backfill(), the tributary.captures view, and a snapshot's
 * progress. The table is named as SQL names it ([schema.]table, resolved by
 * the server's ::regclass), so the CLI and psql agree on which table it is.
 */
import type { Sql } from "postgres";
import { transaction } from "@tributary/client";
import { RELAY_LOCK } from "@tributary/core";
import { UsageError } from "./args.ts";
import { inCliTerms } from "./cli-errors.ts";

/** A row of tributary.captures, as `capture list --json` prints it. */
export interface CaptureDescription {
  table: string;
  stream: string;
  /** "snapshotting" (rowsDone of about rowsEstimated read so far), "streaming" or "stopped". */
  state: "snapshotting" | "streaming" | "stopped";
  stopReason: string | null;
  rowsDone: number;
  rowsEstimated: number | null;
  snapshotFilter: string | null;
  keyColumns: string[];
  /** The include list; null for every column. */
  columns: string[] | null;
  startedAt: string;
  lastChangeAt: string | null;
  snapshotFinishedAt: string | null;
  stoppedAt: string | null;
  /** Where the relay found the capture's own transaction; null until it has. */
  startLsn: string | null;
  captureId: number;
}

interface CaptureRow {
  table: string;
  stream: string;
  state: CaptureDescription["state"];
  stop_reason: string | null;
  rows_done: string;
  rows_estimated: string | null;
  snapshot_filter: string | null;
  key_columns: string[];
  columns: string[] | null;
  started_at: Date;
  last_change_at: Date | null;
  snapshot_finished_at: Date | null;
  stopped_at: Date | null;
  start_lsn: string | null;
  capture_id: string;
}

const describe = (r: CaptureRow): CaptureDescription => ({
  table: r.table,
  stream: r.stream,
  state: r.state,
  stopReason: r.stop_reason,
  rowsDone: Number(r.rows_done),
  rowsEstimated: r.rows_estimated === null ? null : Number(r.rows_estimated),
  snapshotFilter: r.snapshot_filter,
  keyColumns: r.key_columns,
  columns: r.columns,
  startedAt: r.started_at.toISOString(),
  lastChangeAt: r.last_change_at?.toISOString() ?? null,
  snapshotFinishedAt: r.snapshot_finished_at?.toISOString() ?? null,
  stoppedAt: r.stopped_at?.toISOString() ?? null,
  startLsn: r.start_lsn,
  captureId: Number(r.capture_id),
});

/** Whether this database's schema has table capture (migration 0009 applied). */
export async function hasCaptures(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`select to_regclass('tributary.captures') is not null as ok`;
  return row!.ok;
}

/** Every table's latest capture, by table name. */
export async function listCaptures(sql: Sql): Promise<CaptureDescription[]> {
  const rows = await sql<CaptureRow[]>`
    select "table", stream, state, stop_reason, rows_done::text, rows_estimated::text, snapshot_filter, key_columns, columns,
           started_at, last_change_at, snapshot_finished_at, stopped_at, start_lsn::text, capture_id::text
      from tributary.captures
     order by "table", capture_id`;
  return rows.map(describe);
}

export interface CaptureOptions {
  stream?: string;
  partitions?: number;
  snapshot?: "initial" | "none";
  columns?: string[];
}

export interface CaptureAdded {
  table: string;
  stream: string;
  /** The table was captured with these options already: capture() changed nothing. */
  alreadyCaptured: boolean;
  snapshot: "initial" | "none";
  keyColumns: string[];
  columns: string[] | null;
  captureId: number;
  /** When its snapshot was requested (null with snapshot "none" and no backfill since), and its filter: for --wait. */
  requestedAt: string | null;
  filter: string | null;
}

/** tributary.capture(table, options), and whether the live capture it returns was there before. */
export async function addCapture(sql: Sql, table: string, options: CaptureOptions): Promise<CaptureAdded> {
  return transaction(sql, async (tx) => {
    const [before] = await tx<{ id: string }[]>`
      select id::text from tributary.table_captures where relid = ${table}::regclass and stopped_at is null`;
    await tx`select tributary.capture(${table}::regclass, ${tx.json({ ...options })})`;
    const [live] = await tx<{
      id: string; table: string; stream: string; snapshot: "initial" | "none"; key_columns: string[]; columns: string[] | null;
      requested_at: string | null; filter: string | null;
    }[]>`
      select id::text, schema_name || '.' || table_name as table, stream, snapshot, key_columns, columns,
             snapshot_requested_at::text as requested_at, snapshot_filter as filter
        from tributary.table_captures where relid = ${table}::regclass and stopped_at is null`;
    return {
      table: live!.table,
      stream: live!.stream,
      alreadyCaptured: before?.id === live!.id,
      snapshot: live!.snapshot,
      keyColumns: live!.key_columns,
      columns: live!.columns,
      captureId: Number(live!.id),
      requestedAt: live!.requested_at,
      filter: live!.filter,
    };
  }).catch(asUsageError);
}

export interface CaptureRemoved {
  table: string;
  /** False when the table was not captured (nothing changed). */
  removed: boolean;
  /** The stream of the capture removed. */
  stream: string | null;
}

/** tributary.uncapture(table). */
export async function removeCapture(sql: Sql, table: string): Promise<CaptureRemoved> {
  return transaction(sql, async (tx) => {
    const [live] = await tx<{ stream: string }[]>`
      select stream from tributary.table_captures where relid = ${table}::regclass and stopped_at is null`;
    const [result] = await tx<{ removed: boolean; table: string }[]>`
      select tributary.uncapture(${table}::regclass) as removed,
             (select n.nspname || '.' || c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where c.oid = ${table}::regclass) as table`;
    return { table: result!.table, removed: result!.removed, stream: result!.removed ? live?.stream ?? null : null };
  }).catch(asUsageError);
}

/** The request a --wait follows: a capture's snapshot, by its capture and the time it was requested. */
export interface SnapshotRequest {
  table: string;
  stream: string;
  captureId: number;
  /** snapshot_requested_at as the server prints it; null when no snapshot was ever asked (snapshot "none"). */
  requestedAt: string | null;
  /** The backfill's WHERE condition; null for every row. */
  filter: string | null;
}

/** tributary.backfill(table, filter): the request it made. */
export async function backfillCapture(sql: Sql, table: string, filter: string | null): Promise<SnapshotRequest> {
  return transaction(sql, async (tx) => {
    await tx`select tributary.backfill(${table}::regclass, ${filter})`;
    const [request] = await tx<{ id: string; table: string; stream: string; requested_at: string }[]>`
      select id::text, schema_name || '.' || table_name as table, stream, snapshot_requested_at::text as requested_at
        from tributary.table_captures where relid = ${table}::regclass and stopped_at is null`;
    return { table: request!.table, stream: request!.stream, captureId: Number(request!.id), requestedAt: request!.requested_at, filter };
  }).catch(asUsageError);
}

/**
 * A snapshot as the relay leaves it: read from tributary.table_captures, not
 * the captures view, which says neither whether the relay has started it
 * (pending or running) nor which request it is (a backfill requested since
 * starts the snapshot over).
 */
export interface SnapshotRow {
  snapshotState: "pending" | "running" | "done" | null;
  requestedAt: string | null;
  rowsDone: number;
  rowsEstimated: number | null;
  filter: string | null;
  /** Null while the capture is live; as the captures view says it once stopped ("table dropped" when the table is gone). */
  stopReason: string | null;
  stopped: boolean;
  /** Some relay holds a slot's lock in this database (asked only while the snapshot is pending). */
  relayActive: boolean;
}

export async function readSnapshot(sql: Sql, captureId: number): Promise<SnapshotRow> {
  const [row] = await sql<{
    snapshot_state: SnapshotRow["snapshotState"]; requested_at: string | null; rows_done: string; rows_estimated: string | null;
    filter: string | null; stopped: boolean; stop_reason: string | null;
  }[]>`
    select t.snapshot_state, t.snapshot_requested_at::text as requested_at, t.snapshot_rows_done::text as rows_done,
           t.snapshot_rows_estimated::text as rows_estimated, t.snapshot_filter as filter,
           t.stopped_at is not null or c.oid is null as stopped,
           case when t.stopped_at is not null then t.stop_reason when c.oid is null then 'table dropped' end as stop_reason
      from tributary.table_captures t left join pg_catalog.pg_class c on c.oid = t.relid
     where t.id = ${captureId}`;
  const relayActive = row!.snapshot_state === "pending" ? await anyRelayActive(sql) : true;
  return {
    snapshotState: row!.snapshot_state,
    requestedAt: row!.requested_at,
    rowsDone: Number(row!.rows_done),
    rowsEstimated: row!.rows_estimated === null ? null : Number(row!.rows_estimated),
    filter: row!.filter,
    stopReason: row!.stop_reason,
    stopped: row!.stopped,
    relayActive,
  };
}

/** An active relay holds (RELAY_LOCK, hashtext(slot)) in this database (docs/ARCHITECTURE.md "Advisory locks and NOTIFY channels"). */
async function anyRelayActive(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`
    select exists (
      select 1 from pg_locks l
       where l.locktype = 'advisory' and l.granted and l.objsubid = 2 and l.classid = ${RELAY_LOCK}::bigint::oid
         and l.database = (select oid from pg_database where datname = current_database())) as ok`;
  return row!.ok;
}

/**
 * The caller's to fix, exit 2: a rule of the capture SQL API (SQLSTATE 22023,
 * constraint tributary_capture, or tributary_partitions for a stream that
 * exists with another partition count), with its message and hint in the
 * CLI's terms; a table or schema that does not exist, or a name that is no
 * table name.
 */
function asUsageError(error: unknown): never {
  const e = error as { code?: string; constraint_name?: string; message?: string; hint?: string } | null;
  if (e?.code === "22023" && (e.constraint_name === "tributary_capture" || e.constraint_name === "tributary_partitions")) {
    throw new UsageError(inCliTerms(e.hint ? `${e.message} (${e.hint})` : e.message!, e.constraint_name));
  }
  if (e?.code === "42P01" || e?.code === "3F000" || e?.code === "42602") {
    throw new UsageError(`${e.message}: give the table as [schema.]table, as SQL names it (a name without a schema is looked up in the search path)`);
  }
  throw error;
}
