/**
 * Reads snapshots and backfills (tributary.table_captures.snapshot_state
 * 'pending' or 'running') in key-ordered chunks, one chunk at a time, each
 * between two watermarks (chunks.ts). No long transaction and no lock beyond
 * a chunk's SELECT: vacuum and WAL are never pinned by a snapshot.
 *
 * Progress (the cursor: the last key read) is written by the relay with the
 * batch that carries the chunk's rows, so a relay killed mid-snapshot
 * resumes after the last chunk in the stream: no row missing, none twice.
 *
 * A chunk is read with the settings the replication session runs with
 * (SESSION_SETTINGS), so its values have the text the decoders give.
 */
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { transaction } from "@tributary/client";
import { CDC_MESSAGE_PREFIX } from "@tributary/core";
import type { ColumnValue } from "@tributary/wal";
import type { CaptureSet } from "./capture-set.ts";
import type { Chunks } from "./chunks.ts";
import type { TypeCatalog } from "./type-catalog.ts";

/** The text formats column-json.ts reads: the replication session and snapshot reads both run with them. */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  datestyle: "ISO,MDY",
  timezone: "UTC",
  intervalstyle: "iso_8601",
  extra_float_digits: "1",
  bytea_output: "hex",
};

/** SESSION_SETTINGS as a startup `options` string (-c name=value ...). */
export const sessionOptions = (): string => Object.entries(SESSION_SETTINGS).map(([k, v]) => `-c ${k}=${v}`).join(" ");

export interface SnapshotterOptions {
  /** Rows per chunk, at most. */
  readonly chunkRows: number;
  /**
   * About how many bytes of column text a chunk may hold (default 4 MB): a
   * chunk of wide rows is made shorter, so memory stays bounded whatever the
   * rows' size (invariant 6). The first chunk of a request reads few rows to
   * learn their width.
   */
  readonly chunkBytes?: number;
  /** How often to look for a requested snapshot when not woken. */
  readonly pollMs: number;
  readonly log: (message: string) => void;
}

interface Job {
  id: string;
  requested_at: string;
  snapshot_cursor: string[] | null;
  snapshot_filter: string | null;
  snapshot_state: string;
}

const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

const FIRST_CHUNK_ROWS = 64;
const DEFAULT_CHUNK_BYTES = 4 << 20;

export class Snapshotter {
  private wakeUp: (() => void) | null = null;
  private woken = false;
  /** Average bytes per row seen, by capture id and request. */
  private readonly widths = new Map<string, number>();

  constructor(
    private readonly sql: Sql,
    private readonly captures: CaptureSet,
    private readonly chunks: Chunks,
    private readonly catalog: TypeCatalog,
    private readonly options: SnapshotterOptions,
  ) {}

  /** A snapshot was requested: look now. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Reads chunks until `signal` aborts; rejects on a database error (the session ends). */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const job = await this.nextJob();
      if (job === null) {
        await this.idle(signal);
        continue;
      }
      const handled = await this.chunk(job, signal);
      // A dropped chunk (its watermarks were not seen together) is read again; wait a little first.
      if (!handled && !signal.aborted) await this.idle(signal, Math.min(this.options.pollMs, 200));
    }
  }

  private async idle(signal: AbortSignal, ms = this.options.pollMs): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
      this.wakeUp = done;
    });
    this.woken = false;
  }

  private async nextJob(): Promise<Job | null> {
    const jobs = await this.sql<Job[]>`
      select id::text, snapshot_requested_at::text as requested_at, snapshot_cursor, snapshot_filter, snapshot_state
        from tributary.table_captures
       where stopped_at is null and snapshot_state in ('pending', 'running')
       order by snapshot_requested_at, id`;
    // A capture created after this session loaded is read by the next one (its message reloads the session).
    return jobs.find((j) => this.captures.capture(j.id) !== undefined) ?? null;
  }

  /** One chunk of `job`: true once its rows are in the relay's batch. */
  private async chunk(job: Job, signal: AbortSignal): Promise<boolean> {
    const capture = this.captures.capture(job.id)!;
    const { sql } = this;
    if (job.snapshot_state === "pending") {
      await sql`update tributary.table_captures set snapshot_state = 'running'
                 where id = ${job.id} and snapshot_state = 'pending' and snapshot_requested_at = ${job.requested_at}::text::timestamptz`;
      this.options.log(`snapshot of ${capture.schema}.${capture.table} into ${capture.shape.stream}${job.snapshot_filter ? ` (where ${job.snapshot_filter})` : ""}: started`);
    }
    const chunk = this.chunks.register(randomUUID(), capture, job.requested_at);
    const watermark = (edge: "low" | "high") =>
      sql`select pg_logical_emit_message(true, ${CDC_MESSAGE_PREFIX}, ${JSON.stringify({ op: "watermark", edge, chunk: chunk.id })})`;
    try {
      await watermark("low");
      const width = this.widths.get(`${job.id}/${job.requested_at}`);
      const limit = width === undefined
        ? Math.min(this.options.chunkRows, FIRST_CHUNK_ROWS)
        : Math.max(1, Math.min(this.options.chunkRows, Math.floor((this.options.chunkBytes ?? DEFAULT_CHUNK_BYTES) / Math.max(1, width))));
      const read = await this.read(capture.relid, capture.shape.keyColumns, job, limit);
      if (read === null) {
        chunk.settle(false);
        return false;
      }
      if (read.rows.length > 0) this.widths.set(`${job.id}/${job.requested_at}`, read.bytes / read.rows.length);
      await this.catalog.types([...new Set(read.rows.flat().map((c) => c.typeOid))]);
      chunk.rows = read.rows;
      chunk.invisible = read.invisible;
      chunk.last = read.rows.length < limit;
      await watermark("high");
    } catch (error) {
      chunk.settle(false);
      throw error;
    }
    let onAbort = () => {};
    const aborted = new Promise<boolean>((resolve) => (onAbort = () => resolve(false)));
    signal.addEventListener("abort", onAbort, { once: true });
    const handled = await Promise.race([chunk.done, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
    if (handled && chunk.last) {
      this.options.log(`snapshot of ${capture.schema}.${capture.table} into ${capture.shape.stream}: done`);
    }
    return handled;
  }

  /** The chunk's rows after the cursor, in key order, and their text's size; null when the table is gone (its capture is stopped). */
  private async read(relid: number, keyColumns: readonly string[], job: Job, limit: number): Promise<{ rows: ColumnValue[][]; bytes: number; invisible: Set<number> } | null> {
    const { sql } = this;
    const [table] = await sql<{ name: string | null }[]>`
      select format('%I.%I', n.nspname, c.relname) as name
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = ${relid}`;
    if (!table?.name) {
      await sql`update tributary.table_captures set stopped_at = now(), stop_reason = 'table dropped' where id = ${job.id} and stopped_at is null`;
      this.options.log(`capture ${job.id}: its table is gone; capture stopped`);
      return null;
    }
    const types = await sql<{ name: string; type: string }[]>`
      select a.attname::text as name, format_type(a.atttypid, a.atttypmod) as type
        from pg_catalog.pg_attribute a where a.attrelid = ${relid} and a.attname = any (${keyColumns as string[]}) and not a.attisdropped`;
    const keyList = keyColumns.map(ident).join(", ");
    const cursor = job.snapshot_cursor;
    const after = cursor && cursor.length === keyColumns.length
      ? `(${keyList}) > (${keyColumns.map((name, i) => `$${i + 1}::${types.find((t) => t.name === name)?.type ?? "text"}`).join(", ")})`
      : "true";
    const filter = job.snapshot_filter ? ` and (${job.snapshot_filter})` : "";
    const query = `select * from ${table.name} where ${after}${filter} order by ${keyList} limit ${limit}`;
    const settings = Object.entries(SESSION_SETTINGS).map(([k, v]) => `set local ${k} = '${v}'`).join("; ");
    // One snapshot for both statements: the transactions it does not see, then the rows.
    const attempt = await transaction(sql, async (tx) => {
      await tx.unsafe(`set transaction isolation level repeatable read; ${settings}`);
      const unseen = await tx<{ xid: string }[]>`
        select (x::text::bigint % 4294967296)::text as xid from pg_snapshot_xip(pg_current_snapshot()) as x`;
      const rows = await tx.unsafe(query, cursor && after !== "true" ? cursor : []).raw();
      return { rows, invisible: new Set(unseen.map((u) => Number(u.xid))) };
    });
    const result = attempt.rows;
    const columns = result.columns;
    let bytes = 0;
    const rows = (result as unknown as Array<Array<Buffer | null>>).map((row) =>
      row.map((value, i) => {
        bytes += value?.length ?? 0;
        return { name: columns[i]!.name, typeOid: columns[i]!.type, text: value === null ? null : value.toString("utf8") };
      }));
    return { rows, bytes, invisible: attempt.invisible };
  }
}
