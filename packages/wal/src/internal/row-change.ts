/**
 * Row changes of captured tables (issue 12, table CDC), the same for every
 * output plugin. pgoutput and wal2json describe a change differently
 * (relation messages and tuples against a JSON record per change); both
 * decode to a RowChange with the same content, so what the relay makes of it
 * cannot depend on the decoder:
 *
 *  - `columns`: the new row's columns in table order, each with its type OID
 *    and its value as PostgreSQL's text output (what `value::text` prints in
 *    the walsender's session) or null for SQL NULL. Absent from an update:
 *    the columns whose value is an unchanged TOAST pointer, which neither
 *    plugin can send (pgoutput marks them 'u', wal2json leaves them out).
 *  - `identity`: the old row's replica identity, on updates and deletes —
 *    the key columns under REPLICA IDENTITY DEFAULT or USING INDEX, every
 *    column under FULL. An update that kept its key gives the key (pgoutput
 *    sends no old tuple then: it is the new row's key columns). Empty under
 *    REPLICA IDENTITY NOTHING.
 *  - a truncate names one table; a TRUNCATE of several gives one each.
 *  - `relid`: the table's OID, where the decoder knows it (pgoutput's
 *    Relation messages; wal2json names tables only).
 */
export interface ColumnValue {
  readonly name: string;
  readonly typeOid: number;
  /** PostgreSQL's text output of the value; null is SQL NULL. */
  readonly text: string | null;
}

export type RowChange =
  | { readonly kind: "insert"; readonly schema: string; readonly table: string; readonly relid?: number; readonly columns: readonly ColumnValue[] }
  | {
      readonly kind: "update";
      readonly schema: string;
      readonly table: string;
      readonly relid?: number;
      readonly columns: readonly ColumnValue[];
      readonly identity: readonly ColumnValue[];
    }
  | { readonly kind: "delete"; readonly schema: string; readonly table: string; readonly relid?: number; readonly identity: readonly ColumnValue[] }
  | { readonly kind: "truncate"; readonly schema: string; readonly table: string; readonly relid?: number };
