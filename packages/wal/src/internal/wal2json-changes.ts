/**
 * wal2json's row-change records (format-version 2, include-type-oids) to
 * RowChanges, with the same content pgoutput's give (row-change.ts).
 *
 * wal2json prints the values of numeric types (integers, floats, numeric) as
 * bare JSON numbers and booleans as true/false; every other value as a JSON
 * string of its text output. A bare number is the type's text output
 * (wal2json prints that text unquoted), but JSON.parse would round it: 1.10
 * becomes 1.1, int8 9007199254740993 loses its last digit. So each bare
 * number of a "value" member is quoted before parsing, keeping its digits.
 * The rewrite only touches `{"value":` or `,"value":` followed by a digit or
 * a minus: inside a JSON string every quote is escaped (\"), so that
 * sequence is always the record's own structure.
 *
 * wal2json prints a bytea value (type OID 17 itself, not a domain over it nor
 * an array of it) as its hex digits without PostgreSQL's "\x" prefix; the
 * prefix is put back, so the text is the type's output as pgoutput gives it.
 */
import type { ColumnValue, RowChange } from "./row-change.ts";

interface Wal2JsonColumn {
  name: string;
  typeoid?: number;
  value: string | boolean | null;
}

interface Wal2JsonChange {
  action: string;
  schema?: string;
  table?: string;
  columns?: Wal2JsonColumn[];
  identity?: Wal2JsonColumn[];
}

const BYTEA = 17;

const BARE_NUMBER_VALUE = /([{,])"value":(-?[0-9][0-9.eE+-]*)/g;

/** The record's row change, or null for records that are not one (B, C, M). */
export function fromWal2jsonChange(text: string): RowChange | null {
  // Cheap test first: begin, commit and message records are most of the traffic.
  const action = /^\{"action":"([A-Z])"/.exec(text)?.[1];
  if (action !== "I" && action !== "U" && action !== "D" && action !== "T") return null;
  const record = JSON.parse(text.replace(BARE_NUMBER_VALUE, '$1"value":"$2"')) as Wal2JsonChange;
  const schema = record.schema!;
  const table = record.table!;
  switch (action) {
    case "I":
      return { kind: "insert", schema, table, columns: columnsOf(record.columns, record) };
    case "U":
      return { kind: "update", schema, table, columns: columnsOf(record.columns, record), identity: columnsOf(record.identity ?? [], record) };
    case "D":
      return { kind: "delete", schema, table, identity: columnsOf(record.identity ?? [], record) };
    case "T":
      return { kind: "truncate", schema, table };
  }
}

function columnsOf(columns: Wal2JsonColumn[] | undefined, record: Wal2JsonChange): ColumnValue[] {
  if (!columns) throw new Error(`wal2json ${record.action} record for ${record.schema}.${record.table} without columns`);
  return columns.map((c) => {
    if (c.typeoid === undefined) throw new Error("wal2json record without type OIDs: the relay starts wal2json with include-type-oids");
    const text = c.value === null ? null : typeof c.value === "boolean" ? (c.value ? "t" : "f") : c.typeoid === BYTEA ? `\\x${c.value}` : c.value;
    return { name: c.name, typeOid: c.typeoid, text };
  });
}
