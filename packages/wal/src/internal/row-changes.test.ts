import { describe, expect, it } from "vitest";
import { PgoutputChangeDecoder } from "./pgoutput-changes.ts";
import { fromWal2jsonChange } from "./wal2json-changes.ts";

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const cstring = (s: string) => Buffer.from(`${s}\0`);
const relation = Buffer.concat([
  Buffer.from("R"), int32(16400), cstring("public"), cstring("t"), Buffer.from("d"), int16(2),
  Buffer.from([1]), cstring("id"), int32(23), int32(-1 >>> 0),
  Buffer.from([0]), cstring("v"), int32(25), int32(-1 >>> 0),
]);
const tuple = (...values: Array<string | null>) =>
  Buffer.concat([int16(values.length), ...values.map((v) => (v === null ? Buffer.from("n") : Buffer.concat([Buffer.from("t"), int32(Buffer.byteLength(v)), Buffer.from(v)])))]);

describe("pgoutput row changes", () => {
  it("refuses a change of a relation it was not described, and a tuple wider than its relation", () => {
    const decoder = new PgoutputChangeDecoder();
    const insert = Buffer.concat([Buffer.from("I"), int32(16400), Buffer.from("N"), tuple("1", "é")]);
    expect(() => decoder.decode(insert)).toThrow(/relation 16400 before its Relation message/);
    expect(decoder.decode(relation)).toBeNull();
    expect(decoder.decode(insert)).toEqual([{ kind: "insert", schema: "public", table: "t", relid: 16400, columns: [{ name: "id", typeOid: 23, text: "1" }, { name: "v", typeOid: 25, text: "é" }] }]);
    const wide = Buffer.concat([Buffer.from("I"), int32(16400), Buffer.from("N"), tuple("1", "a", "b")]);
    expect(() => decoder.decode(wide)).toThrow(/tuple of 3 columns for public.t, whose Relation message has 2/);
  });

  it("says a message is truncated instead of reading past its end", () => {
    const decoder = new PgoutputChangeDecoder();
    decoder.decode(relation);
    const insert = Buffer.concat([Buffer.from("I"), int32(16400), Buffer.from("N"), tuple("1", "hello")]);
    expect(() => decoder.decode(insert.subarray(0, insert.length - 2))).toThrow(/truncated pgoutput message 'I'/);
  });
});

describe("wal2json row changes", () => {
  it("keeps every digit of bare numbers, and leaves a string that looks like a value member alone", () => {
    const record = String.raw`{"action":"I","schema":"public","table":"t","columns":[{"name":"n","type":"numeric","typeoid":1700,"value":1.10},{"name":"i","type":"bigint","typeoid":20,"value":-9007199254740993},{"name":"s","type":"text","typeoid":25,"value":"a,\"value\":1.50 {\"value\":2"},{"name":"b","type":"boolean","typeoid":16,"value":true}]}`;
    expect(fromWal2jsonChange(record)).toEqual({
      kind: "insert", schema: "public", table: "t",
      columns: [
        { name: "n", typeOid: 1700, text: "1.10" },
        { name: "i", typeOid: 20, text: "-9007199254740993" },
        { name: "s", typeOid: 25, text: 'a,"value":1.50 {"value":2' },
        { name: "b", typeOid: 16, text: "t" },
      ],
    });
  });

  it("reads no row change from begin, commit and message records, and asks for type OIDs when they are missing", () => {
    expect(fromWal2jsonChange(`{"action":"B","lsn":"0/1"}`)).toBeNull();
    expect(fromWal2jsonChange(`{"action":"M","transactional":true,"prefix":"tributary","content":"x"}`)).toBeNull();
    expect(() => fromWal2jsonChange(`{"action":"I","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1}]}`)).toThrow(/include-type-oids/);
  });
});
