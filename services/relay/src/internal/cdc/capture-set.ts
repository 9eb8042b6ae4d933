/**
 * The captures a relay session knows (tributary.table_captures, migration
 * 0009), loaded when the session starts, and what makes a row change a
 * capture's change.
 *
 * A capture covers the transactions committed after the one that created it
 * (its start LSN) up to and including the one that ended it (its stop LSN).
 * Both LSNs are learned from the capture's own 'tributary.cdc' message in the
 * WAL and written by the relay with the batch that carries that transaction,
 * so a session that replays WAL from an earlier checkpoint decides each
 * change exactly as the first one did (docs/ARCHITECTURE.md invariant 14).
 *
 * What the session cannot know synchronously ends it instead (crash-only):
 * a capture created after the session loaded, a type OID not in the type
 * catalog, a table wal2json names that did not exist at load. The next
 * session loads again; `Reloads` keeps a session from ending twice for the
 * same thing.
 */
import type { Sql } from "postgres";
import type { Lsn, RowChange } from "@tributary/wal";
import { Lsn as LsnText } from "@tributary/wal";
import type { CaptureShape } from "./change-event.ts";
import type { TypeCatalog } from "./type-catalog.ts";

export interface Capture {
  /** tributary.table_captures.id (text: a bigint). */
  readonly id: string;
  readonly relid: number;
  readonly schema: string;
  readonly table: string;
  readonly token: string;
  readonly partitions: number;
  readonly shape: CaptureShape;
  startLsn: Lsn | null;
  stopLsn: Lsn | null;
}

/** The session must end: the next one loads what this one lacks. */
export class CaptureReloadError extends Error {
  override readonly name = "CaptureReloadError";
  constructor(
    message: string,
    /** Identifies the cause, so a second session does not end for it again. */
    readonly reloadKey: string,
  ) {
    super(message);
  }
}

/** What sessions ended for already (kept across the sessions of one relay). */
export class Reloads {
  private readonly seen = new Set<string>();
  /** Whether a session has already ended for `key` (and marks it so). */
  once(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}

interface CaptureRow {
  id: string;
  relid: number;
  schema_name: string;
  table_name: string;
  token: string;
  stream: string;
  partitions: number;
  key_columns: string[];
  columns: string[] | null;
  table_columns: string[] | null;
  start_lsn: string | null;
  stop_lsn: string | null;
}

export class CaptureSet {
  private readonly byId = new Map<string, Capture>();
  private readonly byRelid = new Map<number, Capture[]>();
  private readonly byName = new Map<string, Capture[]>();

  private constructor(
    rows: readonly CaptureRow[],
    /** The highest capture id at load: a message naming a higher one is a capture created since. */
    readonly maxId: bigint,
    /** schema.table of every table that existed at load (wal2json's unknown tables are new ones). */
    private readonly knownTables: ReadonlySet<string>,
    /** schema.table of each partition (at any depth) → its captured root's relid. */
    private readonly partitionRoots: ReadonlyMap<string, number>,
    readonly database: string,
  ) {
    for (const row of rows) {
      const capture: Capture = {
        id: row.id,
        relid: row.relid,
        schema: row.schema_name,
        table: row.table_name,
        token: row.token,
        partitions: row.partitions,
        shape: { stream: row.stream, keyColumns: row.key_columns, columns: row.columns, tableColumns: row.table_columns ?? [] },
        startLsn: row.start_lsn === null ? null : LsnText.parse(row.start_lsn),
        stopLsn: row.stop_lsn === null ? null : LsnText.parse(row.stop_lsn),
      };
      this.byId.set(capture.id, capture);
      push(this.byRelid, capture.relid, capture);
      push(this.byName, `${capture.schema}.${capture.table}`, capture);
    }
  }

  /**
   * The captures that may still matter from `commitLsn` on (not stopped
   * before it), with their tables' current columns and key, and their types
   * loaded into `catalog`.
   */
  static async load(sql: Sql, commitLsn: Lsn, catalog: TypeCatalog, knownTables: boolean, extraTypes: readonly number[] = []): Promise<CaptureSet> {
    const rows = await sql<CaptureRow[]>`
      select t.id::text, t.relid::int as relid, coalesce(n.nspname, t.schema_name) as schema_name, coalesce(c.relname, t.table_name) as table_name,
             t.token::text, t.stream, s.partitions,
             -- The table's key now (tributary.capture_key, written out: the relay needs no EXECUTE for it).
             coalesce((select array_agg(a.attname::text order by k.ord)
                         from (select i.indrelid, i.indkey from pg_catalog.pg_index i
                                where i.indrelid = t.relid and (i.indisprimary or i.indisreplident)
                                order by i.indisprimary desc limit 1) ix
                         cross join lateral unnest(ix.indkey) with ordinality as k(attnum, ord)
                         join pg_catalog.pg_attribute a on a.attrelid = ix.indrelid and a.attnum = k.attnum),
                      t.key_columns) as key_columns, t.columns,
             (select array_agg(a.attname::text order by a.attnum) from pg_catalog.pg_attribute a
               where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped) as table_columns,
             t.start_lsn::text, t.stop_lsn::text
        from tributary.table_captures t
        join tributary.streams s on s.name = t.stream
        left join pg_catalog.pg_class c on c.oid = t.relid
        left join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where t.stop_lsn is null or t.stop_lsn > ${LsnText.format(commitLsn)}::pg_lsn
       order by t.id`;
    const [{ max_id, database }] = await sql<{ max_id: string; database: string }[]>`
      select coalesce(max(id), 0)::text as max_id, current_database() as database from tributary.table_captures` as unknown as [{ max_id: string; database: string }];
    const relids = rows.map((r) => r.relid);
    const types = relids.length === 0 ? [] : await sql<{ oid: number }[]>`
      select distinct a.atttypid::int as oid from pg_catalog.pg_attribute a
       where a.attrelid = any (${relids}::oid[]) and a.attnum > 0 and not a.attisdropped`;
    await catalog.types([...types.map((t) => t.oid), ...extraTypes]);
    const partitions = relids.length === 0 ? [] : await sql<{ name: string; root: number }[]>`
      select n.nspname || '.' || c.relname as name, r.relid::int as root
        from unnest(${relids}::oid[]) r(relid)
        cross join lateral pg_catalog.pg_partition_tree(r.relid::regclass) p
        join pg_catalog.pg_class c on c.oid = p.relid
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where p.relid <> r.relid`;
    // wal2json names tables: the ones that existed now tell a new table (maybe a new partition) from an uncaptured one.
    const tables = !knownTables || relids.length === 0 ? [] : await sql<{ name: string }[]>`
      select n.nspname || '.' || c.relname as name from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'tributary')`;
    return new CaptureSet(rows, BigInt(max_id), new Set(tables.map((t) => t.name)), new Map(partitions.map((p) => [p.name, p.root])), database);
  }

  get size(): number {
    return this.byId.size;
  }

  capture(id: string): Capture | undefined {
    return this.byId.get(id);
  }

  all(): IterableIterator<Capture> {
    return this.byId.values();
  }

  /**
   * The capture a change of a transaction committed at `commitLsn` belongs
   * to, or null when none covers it.
   */
  find(change: RowChange, commitLsn: Lsn): Capture | null {
    const name = `${change.schema}.${change.table}`;
    let candidates = change.relid !== undefined ? this.byRelid.get(change.relid) : this.byName.get(name);
    if (candidates === undefined && change.relid === undefined) {
      const root = this.partitionRoots.get(name);
      if (root !== undefined) candidates = this.byRelid.get(root);
      else if (this.knownTables.size > 0 && !this.knownTables.has(name)) {
        throw new CaptureReloadError(`table ${name} is new since this session loaded its captures: loading them again`, `table:${name}`);
      }
    }
    if (candidates === undefined) return null;
    for (const capture of candidates) if (covers(capture, commitLsn)) return capture;
    return null;
  }
}

const covers = (capture: Capture, commitLsn: Lsn): boolean =>
  capture.startLsn !== null && commitLsn > capture.startLsn && (capture.stopLsn === null || commitLsn <= capture.stopLsn);

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** A 'tributary.cdc' message's content, or null when it is not one the relay understands. */
export type ControlMessage =
  | { readonly op: "capture" | "uncapture" | "backfill"; readonly id: string; readonly token: string }
  | { readonly op: "watermark"; readonly edge: "low" | "high"; readonly chunk: string };

export function readControl(content: Buffer): ControlMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(content.toString("utf8"));
  } catch {
    return null;
  }
  const m = value as Record<string, unknown>;
  if (m === null || typeof m !== "object") return null;
  if ((m.op === "capture" || m.op === "uncapture" || m.op === "backfill") && (typeof m.id === "number" || typeof m.id === "string") && typeof m.token === "string") {
    return { op: m.op, id: String(m.id), token: m.token };
  }
  if (m.op === "watermark" && (m.edge === "low" || m.edge === "high") && typeof m.chunk === "string") return { op: "watermark", edge: m.edge, chunk: m.chunk };
  return null;
}
