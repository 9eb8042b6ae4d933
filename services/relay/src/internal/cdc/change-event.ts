/**
 * A captured table's row change as stream events (issue 12, table CDC): the
 * event's `data` is Debezium's change-event payload, so tools that read
 * Debezium JSON (Kafka Connect sinks, Flink CDC's debezium-json format) read
 * the bridged topics as they are:
 *
 *   { "before": {…} | null, "after": {…} | null, "op": "c" | "u" | "d" | "r" | "t",
 *     "source": { "connector": "tributary", "db", "schema", "table", "lsn", "txId",
 *                 "ts_ms", "snapshot": "false" | "true" }, "ts_ms" }
 *
 * - `key`: the row's key column's text, or a JSON array of the key columns'
 *   texts for a composite key: a row's changes land in one partition.
 * - An update that changes the key is, as in Debezium, a delete of the old
 *   key followed by a create of the new one: replaying each key's events
 *   gives the table's rows.
 * - `before`: the old row under REPLICA IDENTITY FULL, the old key under
 *   DEFAULT; `after`: the new row. A column whose value is an unchanged TOAST
 *   pointer (neither decoder has its value) is UNAVAILABLE, Debezium's
 *   placeholder, never a silent null.
 * - Only the captured columns appear (the include list), key columns always.
 *
 * Values are JSON text built by `jsonOf` (column-json.ts): the event's data
 * is assembled as text and stored as jsonb, so int8 and numeric keep every
 * digit.
 */
import type { ColumnValue, RowChange } from "@tributary/wal";

/** What an unchanged TOASTed column shows in `after` (Debezium's `unavailable.value.placeholder`). */
export const UNAVAILABLE = "__debezium_unavailable_value";

export type ChangeOp = "c" | "u" | "d" | "r" | "t";

/** Event types by op: the envelope's op in words. */
export const CHANGE_TYPES: Readonly<Record<ChangeOp, string>> = {
  c: "row.inserted",
  u: "row.updated",
  d: "row.deleted",
  r: "row.read",
  t: "table.truncated",
};

export interface CaptureShape {
  readonly stream: string;
  /** The key columns, in key order (primary key, else the replica identity index). */
  readonly keyColumns: readonly string[];
  /** The columns carried, in table order; null: every column. Key columns are always carried. */
  readonly columns: readonly string[] | null;
  /** The columns of the table, in table order, as the capture knows them: an update's missing ones are unchanged TOAST. */
  readonly tableColumns: readonly string[];
}

export interface ChangeSource {
  readonly database: string;
  readonly lsn: bigint;
  readonly txId: number;
  readonly commitTimeMs: number;
  readonly snapshot: boolean;
}

export interface ChangeEvent {
  readonly stream: string;
  readonly key: string;
  readonly type: string;
  /** The envelope as JSON text. */
  readonly data: string;
}

/** A column's value as JSON text (column-json.ts). */
export type JsonOf = (typeOid: number, text: string | null) => string;

export class ChangeEventError extends Error {
  override readonly name = "ChangeEventError";
}

/** The events of one row change: one, or two for an update that changed the key. */
export function changeEvents(change: RowChange, shape: CaptureShape, source: ChangeSource, jsonOf: JsonOf, nowMs: number = Date.now()): ChangeEvent[] {
  const envelope = (op: ChangeOp, before: string, after: string, schema: string, table: string) =>
    `{"before":${before},"after":${after},"op":"${op}","source":${sourcePrefix(source.database, schema, table)}"lsn":${source.lsn},"txId":${source.txId},"ts_ms":${source.commitTimeMs},"snapshot":"${source.snapshot}"},"ts_ms":${nowMs}}`;
  const where = `${change.schema}.${change.table}`;
  switch (change.kind) {
    case "insert": {
      const key = keyOf(change.columns, shape, where);
      return [{ stream: shape.stream, key, type: CHANGE_TYPES[source.snapshot ? "r" : "c"], data: envelope(source.snapshot ? "r" : "c", "null", rowJson(change.columns, shape, jsonOf, false), change.schema, change.table) }];
    }
    case "update": {
      const key = keyOf(change.columns, shape, where);
      const oldKey = change.identity.length > 0 ? keyOf(change.identity, shape, where) : key;
      const after = rowJson(change.columns, shape, jsonOf, true);
      const before = change.identity.length > 0 ? rowJson(change.identity, shape, jsonOf, false) : "null";
      if (oldKey === key) return [{ stream: shape.stream, key, type: CHANGE_TYPES.u, data: envelope("u", before, after, change.schema, change.table) }];
      return [
        { stream: shape.stream, key: oldKey, type: CHANGE_TYPES.d, data: envelope("d", before, "null", change.schema, change.table) },
        { stream: shape.stream, key, type: CHANGE_TYPES.c, data: envelope("c", "null", after, change.schema, change.table) },
      ];
    }
    case "delete": {
      if (change.identity.length === 0) throw new ChangeEventError(`a delete on ${where} carries no old key (REPLICA IDENTITY NOTHING): ALTER TABLE ${where} REPLICA IDENTITY DEFAULT`);
      const key = keyOf(change.identity, shape, where);
      return [{ stream: shape.stream, key, type: CHANGE_TYPES.d, data: envelope("d", rowJson(change.identity, shape, jsonOf, false), "null", change.schema, change.table) }];
    }
    case "truncate":
      // No row, so no key of one: the table's name keeps a table's truncates in one partition.
      return [{ stream: shape.stream, key: where, type: CHANGE_TYPES.t, data: envelope("t", "null", "null", change.schema, change.table) }];
  }
}

/** `{"connector":…,"db":…,"schema":…,"table":…,` — the same for every change of a table, so made once. */
const sourcePrefixes = new Map<string, string>();
function sourcePrefix(database: string, schema: string, table: string): string {
  const id = `${database}\u0000${schema}\u0000${table}`;
  let prefix = sourcePrefixes.get(id);
  if (prefix === undefined) {
    prefix = `{"connector":"tributary","db":${JSON.stringify(database)},"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},`;
    if (sourcePrefixes.size > 10_000) sourcePrefixes.clear();
    sourcePrefixes.set(id, prefix);
  }
  return prefix;
}

/** A column name as a JSON object key with its colon: made once per name. */
const memberNames = new Map<string, string>();
function member(name: string): string {
  let quoted = memberNames.get(name);
  if (quoted === undefined) {
    quoted = `${JSON.stringify(name)}:`;
    if (memberNames.size > 100_000) memberNames.clear();
    memberNames.set(name, quoted);
  }
  return quoted;
}

function keyOf(columns: readonly ColumnValue[], shape: CaptureShape, where: string): string {
  const texts = shape.keyColumns.map((name) => {
    const column = columns.find((c) => c.name === name);
    if (!column) throw new ChangeEventError(`a change on ${where} lacks key column ${name}: was the key changed without tributary.capture() being told? Run tributary.capture() again with the new key`);
    if (column.text === null) throw new ChangeEventError(`a change on ${where} has a NULL in key column ${name}`);
    return column.text;
  });
  return texts.length === 1 ? texts[0]! : JSON.stringify(texts);
}

/** The row as a JSON object of the captured columns; with `fillUnchanged`, a captured column absent from it is UNAVAILABLE. */
function rowJson(columns: readonly ColumnValue[], shape: CaptureShape, jsonOf: JsonOf, fillUnchanged: boolean): string {
  const all = shape.columns === null;
  const carried = (name: string) => all || shape.columns!.includes(name) || shape.keyColumns.includes(name);
  let json = "{";
  let first = true;
  const add = (name: string, value: string) => {
    json += first ? member(name) + value : "," + member(name) + value;
    first = false;
  };
  if (!fillUnchanged || columns.length === shape.tableColumns.length) {
    // Every column present (no unchanged TOAST value): in the change's own order.
    for (const column of columns) if (carried(column.name)) add(column.name, jsonOf(column.typeOid, column.text));
    return json + "}";
  }
  // Some columns are unchanged TOAST values (rare): look each of the table's up by name.
  const byName = new Map(columns.map((c) => [c.name, c]));
  for (const name of shape.tableColumns) {
    if (!carried(name)) continue;
    const column = byName.get(name);
    add(name, column ? jsonOf(column.typeOid, column.text) : JSON.stringify(UNAVAILABLE));
  }
  // Columns the capture does not know yet (added since): carried as they come.
  for (const column of columns) if (!shape.tableColumns.includes(column.name) && carried(column.name)) add(column.name, jsonOf(column.typeOid, column.text));
  return json + "}";
}
