/**
 * pgoutput's row-change messages (protocol version 1) to RowChanges.
 *
 * Stateful: an Insert, Update, Delete or Truncate names its table by
 * relation OID, described by a Relation message that pgoutput sends before
 * the table's first change of a session and again after its schema changed.
 * One decoder per replication session (a new session starts with an empty
 * cache and receives every Relation again).
 *
 * Layouts (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
 *   'R' Int32 oid, String namespace, String name, Int8 replica identity, Int16 n,
 *       n × (Int8 flags (1 = part of the key), String name, Int32 type OID, Int32 typmod)
 *   'I' Int32 oid, 'N', TupleData
 *   'U' Int32 oid, ['K' | 'O', TupleData], 'N', TupleData
 *   'D' Int32 oid, 'K' | 'O', TupleData
 *   'T' Int32 n, Int8 options, n × Int32 oid
 *   TupleData: Int16 n, n × ('n' null | 'u' unchanged TOAST | 't' Int32 length, bytes)
 */
import type { ColumnValue, RowChange } from "./row-change.ts";

interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly isKey: boolean;
}

interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly RelationColumn[];
}

/** A tuple's columns in table order; `undefined` is an unchanged TOAST value. */
type Tuple = ReadonlyArray<string | null | undefined>;

class Reader {
  private at: number;
  constructor(
    private readonly buffer: Buffer,
    start: number,
  ) {
    this.at = start;
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.buffer.length) throw new Error(`truncated pgoutput message '${String.fromCharCode(this.buffer[0]!)}': ${bytes} more bytes needed at ${this.at} of ${this.buffer.length}`);
  }

  byte(): number {
    this.need(1);
    return this.buffer[this.at++]!;
  }

  int16(): number {
    this.need(2);
    const value = this.buffer.readInt16BE(this.at);
    this.at += 2;
    return value;
  }

  int32(): number {
    this.need(4);
    const value = this.buffer.readInt32BE(this.at);
    this.at += 4;
    return value;
  }

  uint32(): number {
    this.need(4);
    const value = this.buffer.readUInt32BE(this.at);
    this.at += 4;
    return value;
  }

  string(): string {
    const end = this.buffer.indexOf(0, this.at);
    if (end < 0) throw new Error("truncated pgoutput message: a string has no terminating NUL");
    const value = this.buffer.toString("utf8", this.at, end);
    this.at = end + 1;
    return value;
  }

  text(length: number): string {
    this.need(length);
    const value = this.buffer.toString("utf8", this.at, this.at + length);
    this.at += length;
    return value;
  }

  tuple(): Tuple {
    const count = this.int16();
    const values: Array<string | null | undefined> = new Array(count);
    for (let i = 0; i < count; i++) {
      const kind = this.byte();
      if (kind === 0x6e /* n */) values[i] = null;
      else if (kind === 0x75 /* u */) values[i] = undefined;
      else if (kind === 0x74 /* t */) values[i] = this.text(this.uint32());
      else throw new Error(`pgoutput tuple column of kind '${String.fromCharCode(kind)}': only text ('t'), null and unchanged TOAST are expected (binary mode is off)`);
    }
    return values;
  }
}

export class PgoutputChangeDecoder {
  private readonly relations = new Map<number, Relation>();

  /**
   * The row change in `buffer` (one XLogData body), or null for messages
   * that are not row changes. A Relation message is remembered and gives null.
   */
  decode(buffer: Buffer): RowChange[] | null {
    const reader = new Reader(buffer, 1);
    switch (buffer[0]) {
      case 0x52 /* R */:
        this.readRelation(reader);
        return null;
      case 0x49 /* I */: {
        const relation = this.relation(reader.uint32());
        if (reader.byte() !== 0x4e) throw new Error("pgoutput Insert without its 'N' tuple");
        return [{ kind: "insert", schema: relation.schema, table: relation.table, relid: relation.oid, columns: present(relation, reader.tuple()) }];
      }
      case 0x55 /* U */: {
        const relation = this.relation(reader.uint32());
        let marker = reader.byte();
        let old: Tuple | null = null;
        let oldIsKey = false;
        if (marker === 0x4b /* K */ || marker === 0x4f /* O */) {
          oldIsKey = marker === 0x4b;
          old = reader.tuple();
          marker = reader.byte();
        }
        if (marker !== 0x4e) throw new Error("pgoutput Update without its 'N' tuple");
        const next = reader.tuple();
        // No old tuple: the key did not change (or the identity is NOTHING); it is the new row's key.
        const identity = old === null ? keyOf(relation, next) : oldIsKey ? keyOf(relation, old) : present(relation, old);
        return [{ kind: "update", schema: relation.schema, table: relation.table, relid: relation.oid, columns: present(relation, next), identity }];
      }
      case 0x44 /* D */: {
        const relation = this.relation(reader.uint32());
        const marker = reader.byte();
        if (marker !== 0x4b && marker !== 0x4f) throw new Error("pgoutput Delete without its old tuple");
        const old = reader.tuple();
        return [{ kind: "delete", schema: relation.schema, table: relation.table, relid: relation.oid, identity: marker === 0x4b ? keyOf(relation, old) : present(relation, old) }];
      }
      case 0x54 /* T */: {
        const count = reader.int32();
        reader.byte(); // options: CASCADE, RESTART IDENTITY
        const changes: RowChange[] = [];
        for (let i = 0; i < count; i++) {
          const relation = this.relation(reader.uint32());
          changes.push({ kind: "truncate", schema: relation.schema, table: relation.table, relid: relation.oid });
        }
        return changes;
      }
      default:
        return null;
    }
  }

  private readRelation(reader: Reader): void {
    const oid = reader.uint32();
    const schema = reader.string();
    const table = reader.string();
    reader.byte(); // replica identity setting: the tuples say what they carry
    const count = reader.int16();
    const columns: RelationColumn[] = [];
    for (let i = 0; i < count; i++) {
      const flags = reader.byte();
      const name = reader.string();
      const typeOid = reader.uint32();
      reader.int32(); // typmod
      columns.push({ name, typeOid, isKey: (flags & 1) === 1 });
    }
    this.relations.set(oid, { oid, schema, table, columns });
  }

  private relation(oid: number): Relation {
    const relation = this.relations.get(oid);
    if (!relation) throw new Error(`pgoutput change for relation ${oid} before its Relation message`);
    return relation;
  }
}

function column(relation: Relation, tuple: Tuple, i: number): ColumnValue {
  const { name, typeOid } = relation.columns[i]!;
  return { name, typeOid, text: tuple[i] as string | null };
}

function checkWidth(relation: Relation, tuple: Tuple): void {
  if (tuple.length !== relation.columns.length) {
    throw new Error(`pgoutput tuple of ${tuple.length} columns for ${relation.schema}.${relation.table}, whose Relation message has ${relation.columns.length}`);
  }
}

/** Every column but unchanged TOAST values. */
function present(relation: Relation, tuple: Tuple): ColumnValue[] {
  checkWidth(relation, tuple);
  const columns: ColumnValue[] = [];
  for (let i = 0; i < tuple.length; i++) if (tuple[i] !== undefined) columns.push(column(relation, tuple, i));
  return columns;
}

/** The replica identity's key columns. */
function keyOf(relation: Relation, tuple: Tuple): ColumnValue[] {
  checkWidth(relation, tuple);
  const columns: ColumnValue[] = [];
  for (let i = 0; i < tuple.length; i++) if (relation.columns[i]!.isKey) columns.push(column(relation, tuple, i));
  return columns;
}
