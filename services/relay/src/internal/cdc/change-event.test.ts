import { describe, expect, it } from "vitest";
import type { RowChange } from "@tributary/wal";
import { changeEvents, UNAVAILABLE, type CaptureShape, type ChangeSource } from "./change-event.ts";

const INT4 = 23;
const TEXT = 25;
// Integers as numbers, the rest as strings: enough to see where each value goes (column-json.ts maps the types).
const jsonOf = (typeOid: number, text: string | null) => (text === null ? "null" : typeOid === INT4 ? text : JSON.stringify(text));
const source: ChangeSource = { database: "shop", lsn: 0x1_0000_0010n, txId: 731, commitTimeMs: 1_764_651_600_123, snapshot: false };
const shape: CaptureShape = { stream: "public.orders", keyColumns: ["id"], columns: null, tableColumns: ["id", "note", "total"] };
const col = (name: string, text: string | null, typeOid = name === "note" ? TEXT : INT4) => ({ name, typeOid, text });
const parsed = (events: ReturnType<typeof changeEvents>) => events.map((e) => ({ ...e, data: JSON.parse(e.data) as Record<string, unknown> }));

describe("change events", () => {
  it("an insert is a create with the row in after, the key's text as key, and Debezium's source", () => {
    const change: RowChange = { kind: "insert", schema: "public", table: "orders", columns: [col("id", "7"), col("note", "a \"b\""), col("total", null)] };
    expect(parsed(changeEvents(change, shape, source, jsonOf, 42))).toEqual([{
      stream: "public.orders", key: "7", type: "row.inserted",
      data: {
        before: null, after: { id: 7, note: 'a "b"', total: null }, op: "c", ts_ms: 42,
        source: { connector: "tributary", db: "shop", schema: "public", table: "orders", lsn: 0x1_0000_0010, txId: 731, ts_ms: 1_764_651_600_123, snapshot: "false" },
      },
    }]);
  });

  it("an update keeps the key; an unchanged TOASTed column is the placeholder, never null", () => {
    const change: RowChange = { kind: "update", schema: "public", table: "orders", columns: [col("id", "7"), col("total", "12")], identity: [col("id", "7")] };
    const [event] = parsed(changeEvents(change, shape, source, jsonOf));
    expect(event!.key).toBe("7");
    expect(event!.type).toBe("row.updated");
    expect(event!.data).toMatchObject({ op: "u", before: { id: 7 }, after: { id: 7, note: UNAVAILABLE, total: 12 } });
  });

  it("an update that changes the key is a delete of the old key, then a create of the new one", () => {
    const change: RowChange = { kind: "update", schema: "public", table: "orders", columns: [col("id", "8"), col("note", "n"), col("total", "1")], identity: [col("id", "7")] };
    const events = parsed(changeEvents(change, shape, source, jsonOf));
    expect(events.map((e) => [e.key, e.type, e.data.op, e.data.before, e.data.after])).toEqual([
      ["7", "row.deleted", "d", { id: 7 }, null],
      ["8", "row.inserted", "c", null, { id: 8, note: "n", total: 1 }],
    ]);
  });

  it("a composite key is a JSON array of the key columns' texts, in key order; only captured columns are carried", () => {
    const pair: CaptureShape = { stream: "lines", keyColumns: ["total", "id"], columns: ["note"], tableColumns: ["id", "note", "total"] };
    const change: RowChange = { kind: "delete", schema: "public", table: "lines", identity: [col("id", "7"), col("total", "3")] };
    const [event] = parsed(changeEvents(change, pair, source, jsonOf));
    expect(event!.key).toBe('["3","7"]');
    expect(event!.data).toMatchObject({ op: "d", before: { id: 7, total: 3 }, after: null });
    const insert: RowChange = { kind: "insert", schema: "public", table: "lines", columns: [col("id", "7"), col("note", "x"), col("total", "3")] };
    expect(parsed(changeEvents(insert, pair, source, jsonOf))[0]!.data.after).toEqual({ id: 7, note: "x", total: 3 });
  });

  it("a snapshot read is op r; a truncate is op t keyed by the table", () => {
    const read: RowChange = { kind: "insert", schema: "public", table: "orders", columns: [col("id", "1"), col("note", null), col("total", "0")] };
    expect(parsed(changeEvents(read, shape, { ...source, snapshot: true }, jsonOf))[0]).toMatchObject({ type: "row.read", data: { op: "r", source: { snapshot: "true" } } });
    const truncate: RowChange = { kind: "truncate", schema: "public", table: "orders" };
    expect(parsed(changeEvents(truncate, shape, source, jsonOf))[0]).toMatchObject({ key: "public.orders", type: "table.truncated", data: { op: "t", before: null, after: null } });
  });

  it("says what is wrong with a change it cannot key", () => {
    expect(() => changeEvents({ kind: "delete", schema: "public", table: "orders", identity: [] }, shape, source, jsonOf)).toThrow(/REPLICA IDENTITY NOTHING\): ALTER TABLE public.orders REPLICA IDENTITY DEFAULT/);
    expect(() => changeEvents({ kind: "insert", schema: "public", table: "orders", columns: [col("note", "x")] }, shape, source, jsonOf)).toThrow(/lacks key column id/);
    expect(() => changeEvents({ kind: "insert", schema: "public", table: "orders", columns: [col("id", null)] }, shape, source, jsonOf)).toThrow(/NULL in key column id/);
  });
});
