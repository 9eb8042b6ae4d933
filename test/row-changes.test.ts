/**
 * Row changes of captured tables, decoded from both output plugins (issue 12,
 * table CDC: pgoutput and wal2json must give identical events). One scenario
 * of inserts, updates (TOAST unchanged, key changed), deletes under REPLICA
 * IDENTITY DEFAULT and FULL, a composite key, a column added meanwhile, a
 * rolled-back transaction and a TRUNCATE of two tables is read from a slot of the leg's decoder
 * (pg_logical_slot_peek_binary_changes for pgoutput, whose bytes are what
 * the replication stream carries; pg_logical_slot_peek_changes for
 * wal2json) and must decode to the same hand-written RowChanges on every leg.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { transaction } from "@tributary/client";
import { fromWal2json, fromWal2jsonChange, parsePgoutput, PgoutputChangeDecoder, type ColumnValue, type RowChange } from "@tributary/wal";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";

const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const NUMERIC = 1700;
const FLOAT8 = 701;
const BOOL = 16;
const JSONB = 3802;
const INT4_ARRAY = 1007;
const TIMESTAMPTZ = 1184;

const big = "x".repeat(10_000);

/** t's columns in table order, for a row. */
const tRow = (id: number, name: string | null, bigText: string | null | "unchanged", n: string, b: string | null, extra: { f?: string; i8?: string; j?: string | null; a?: string; ts?: string } = {}) =>
  [
    { name: "id", typeOid: INT4, text: String(id) },
    { name: "name", typeOid: TEXT, text: name },
    ...(bigText === "unchanged" ? [] : [{ name: "big", typeOid: TEXT, text: bigText }]),
    { name: "n", typeOid: NUMERIC, text: n },
    { name: "f", typeOid: FLOAT8, text: extra.f ?? "1e+300" },
    { name: "i8", typeOid: INT8, text: extra.i8 ?? "9007199254740993" },
    { name: "b", typeOid: BOOL, text: b },
    { name: "j", typeOid: JSONB, text: extra.j === undefined ? '{"a": [1, 2.50], "s": "q\\"uote"}' : extra.j },
    { name: "a", typeOid: INT4_ARRAY, text: extra.a ?? "{1,NULL,3}" },
    { name: "ts", typeOid: TIMESTAMPTZ, text: extra.ts ?? "2026-12-02 05:00:00.123456+00" },
  ];
const key = (id: number) => [{ name: "id", typeOid: INT4, text: String(id) }];

const expected: RowChange[] = [
  { kind: "insert", schema: "public", table: "t", columns: tRow(1, "one", big, "1.10", "t") },
  // The TOASTed column did not change: neither plugin has its value.
  { kind: "update", schema: "public", table: "t", columns: tRow(1, "one", "unchanged", "2.50", "t"), identity: key(1) },
  // The key changed: the identity is the old key.
  { kind: "update", schema: "public", table: "t", columns: tRow(2, "one", "unchanged", "2.50", "t"), identity: key(1) },
  { kind: "delete", schema: "public", table: "t", identity: key(2) },
  { kind: "insert", schema: "public", table: "t", columns: tRow(3, null, "small", "-0.000001", null, { f: "NaN", i8: "-9223372036854775808", j: null, a: "{}" }) },
  // REPLICA IDENTITY FULL: the whole old row.
  {
    kind: "update", schema: "public", table: "t",
    columns: tRow(3, "three", "small", "-0.000001", "f", { f: "NaN", i8: "-9223372036854775808", j: null, a: "{}" }),
    identity: tRow(3, null, "small", "-0.000001", null, { f: "NaN", i8: "-9223372036854775808", j: null, a: "{}" }),
  },
  { kind: "delete", schema: "public", table: "t", identity: tRow(3, "three", "small", "-0.000001", "f", { f: "NaN", i8: "-9223372036854775808", j: null, a: "{}" }) },
  { kind: "insert", schema: "public", table: "pair", columns: [{ name: "a", typeOid: INT4, text: "7" }, { name: "b", typeOid: TEXT, text: "x,y" }, { name: "v", typeOid: TEXT, text: "line\nbreak" }] },
  // A column added while capturing: the next change has it (pgoutput sends a new Relation message).
  { kind: "insert", schema: "public", table: "pair", columns: [{ name: "a", typeOid: INT4, text: "8" }, { name: "b", typeOid: TEXT, text: "z" }, { name: "v", typeOid: TEXT, text: null }, { name: "w", typeOid: INT4, text: "5" }] },
  { kind: "delete", schema: "public", table: "pair", identity: [{ name: "a", typeOid: INT4, text: "7" }, { name: "b", typeOid: TEXT, text: "x,y" }] },
  { kind: "truncate", schema: "public", table: "t" },
  { kind: "truncate", schema: "public", table: "pair" },
];

/**
 * wal2json prints NaN and ±Infinity of numeric, real and double precision as
 * JSON null (JSON has no such numbers): through wal2json they cannot be told
 * from SQL NULL (docs/ARCHITECTURE.md, Known traps). pgoutput sends the text.
 */
function wal2jsonNonFinite(change: RowChange): RowChange {
  const lose = (columns: readonly ColumnValue[]) =>
    columns.map((c) => ([NUMERIC, FLOAT8].includes(c.typeOid) && c.text !== null && /^-?(NaN|Infinity)$/.test(c.text) ? { ...c, text: null } : c));
  if (change.kind === "insert") return { ...change, columns: lose(change.columns) };
  if (change.kind === "update") return { ...change, columns: lose(change.columns), identity: lose(change.identity) };
  if (change.kind === "delete") return { ...change, identity: lose(change.identity) };
  return change;
}

describeBackends("row changes", (backend) => {
  let db: TestDatabase;
  const slot = () => `${db.slotName}_rows`;

  beforeEach(async () => {
    db = await createTestDatabase(backend, { migrate: false });
  });
  afterEach(async () => {
    await db.sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot()}`;
    await db.drop();
  });

  /** The slot's changes so far, decoded. Text output follows the session's settings (the walsender's for the relay, this one's here). */
  const decodedChanges = () => transaction(db.sql, async (tx) => {
    await tx`set local timezone = 'UTC'`;
    const changes: RowChange[] = [];
    if (backend.decoder === "pgoutput") {
      const decoder = new PgoutputChangeDecoder();
      const rows = await tx<{ data: Buffer }[]>`
        select data from pg_logical_slot_peek_binary_changes(${slot()}, null, null, 'proto_version', '1', 'publication_names', 'captured')`;
      // The table OID is pgoutput's alone (wal2json names tables only).
      for (const row of rows) changes.push(...(decoder.decode(row.data) ?? []).map(({ relid: _relid, ...change }) => change as RowChange));
    } else {
      const rows = await tx<{ data: string }[]>`
        select data from pg_logical_slot_peek_changes(${slot()}, null, null, 'format-version', '2', 'include-type-oids', '1', 'include-transaction', 'true')`;
      for (const row of rows) {
        const change = fromWal2jsonChange(row.data);
        if (change) changes.push(change);
      }
    }
    return changes;
  });

  it("inserts, updates and deletes under each replica identity, a composite key and a truncate decode to the same row changes", async () => {
    const sql = db.sql;
    await sql.unsafe(`
      create table t (id int primary key, name text, big text, n numeric, f float8, i8 int8, b bool, j jsonb, a int[], ts timestamptz);
      alter table t alter column big set storage external;
      create table pair (a int, b text, v text, primary key (a, b));
      create publication captured for table t, pair`);
    await sql`select pg_create_logical_replication_slot(${slot()}, ${backend.decoder})`;
    await sql.unsafe(`
      insert into t values (1, 'one', repeat('x', 10000), 1.10, 1e300, 9007199254740993, true, '{"a": [1, 2.50], "s": "q\\"uote"}', '{1,null,3}', '2026-12-02 05:00:00.123456+00');
      update t set n = 2.50 where id = 1;
      update t set id = 2 where id = 1;
      delete from t where id = 2`);
    const rolledBack = await transaction(sql, async (tx) => {
      await tx`insert into t (id, name, n) values (99, 'rolled back', 0)`;
      throw new Error("rolled back on purpose");
    }).catch((error: Error) => error.message);
    expect(rolledBack).toBe("rolled back on purpose");
    await sql.unsafe(`
      alter table t replica identity full;
      insert into t values (3, null, 'small', -0.000001, 'NaN', -9223372036854775808, null, null, '{}', '2026-12-02 05:00:00.123456+00');
      update t set name = 'three', b = false where id = 3;
      delete from t where id = 3;
      insert into pair values (7, 'x,y', E'line\\nbreak');
      alter table pair add column w int;
      insert into pair values (8, 'z', null, 5);
      delete from pair where a = 7;
      truncate t, pair`);
    expect(await decodedChanges()).toEqual(backend.decoder === "wal2json" ? expected.map(wal2jsonNonFinite) : expected);
  });

  it("a transaction's begin carries its xid (the change events' source.txId)", async () => {
    await db.sql.unsafe(`create table t (id int primary key); create publication captured for table t`);
    await db.sql`select pg_create_logical_replication_slot(${slot()}, ${backend.decoder})`;
    const xid = await transaction(db.sql, async (tx) => {
      await tx`insert into t values (1)`;
      return Number((await tx<{ xid: string }[]>`select pg_current_xact_id()::text as xid`)[0]!.xid);
    });
    const begins =
      backend.decoder === "pgoutput"
        ? (await db.sql<{ data: Buffer }[]>`select data from pg_logical_slot_peek_binary_changes(${slot()}, null, null, 'proto_version', '1', 'publication_names', 'captured')`).map((r) => parsePgoutput(r.data))
        : (await db.sql<{ data: string }[]>`select data from pg_logical_slot_peek_changes(${slot()}, null, null, 'format-version', '2', 'include-xids', '1', 'include-lsn', '1', 'include-timestamp', '1', 'include-transaction', '1')`).map((r) => fromWal2json(JSON.parse(r.data)));
    expect(begins.filter((m) => m?.kind === "begin").map((m) => (m as { xid: number }).xid)).toEqual([xid]);
  });
});
