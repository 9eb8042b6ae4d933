import type { Sql } from "postgres";
import { describe, expect, it } from "vitest";
import { columnJson, ColumnValueError, TypeCatalog, type ColumnType } from "./column-json.ts";
import { builtinType } from "./type-catalog.ts";

const builtin = (oid: number): ColumnType => builtinType(oid)!;
const INT4 = builtin(23);
const INT8 = builtin(20);
const TEXT = builtin(25);
const INT4_ARRAY = builtin(1007);
const TEXT_ARRAY = builtin(1009);
const MOOD: ColumnType = { kind: "enum", oid: 90001, name: "mood" };
const array = (element: ColumnType, delimiter = ","): ColumnType => ({ kind: "array", oid: 90002, name: `_${element.name}`, element, delimiter });

describe("scalars", () => {
  it("keeps every digit of an integer, past 2^53", () => {
    expect(columnJson(INT8, "9007199254740993")).toBe("9007199254740993");
    expect(columnJson(INT8, "-9223372036854775808")).toBe("-9223372036854775808");
    expect(columnJson(builtin(26), "4294967295")).toBe("4294967295");
    expect(() => columnJson(INT4, "12a")).toThrow(ColumnValueError);
  });

  it("prints floats as numbers, and NaN and the infinities as strings", () => {
    const float8 = builtin(701);
    expect(columnJson(float8, "1e+300")).toBe("1e+300");
    expect(columnJson(float8, "-1.2345e-05")).toBe("-1.2345e-05");
    expect(columnJson(builtin(700), "1.5")).toBe("1.5");
    expect(columnJson(float8, "-0")).toBe("-0");
    expect(columnJson(float8, "NaN")).toBe('"NaN"');
    expect(columnJson(float8, "Infinity")).toBe('"Infinity"');
    expect(columnJson(float8, "-Infinity")).toBe('"-Infinity"');
    expect(() => columnJson(float8, "inf")).toThrow(ColumnValueError);
  });

  it("keeps numeric exact, as a string", () => {
    expect(columnJson(builtin(1700), "1.10")).toBe('"1.10"');
    expect(columnJson(builtin(1700), "12345678901234567890.000001")).toBe('"12345678901234567890.000001"');
    expect(columnJson(builtin(1700), "NaN")).toBe('"NaN"');
  });

  it("maps booleans, json, strings, enums, domains and NULL", () => {
    expect(columnJson(builtin(16), "t")).toBe("true");
    expect(columnJson(builtin(16), "f")).toBe("false");
    expect(() => columnJson(builtin(16), "true")).toThrow(ColumnValueError);
    expect(columnJson(builtin(3802), '{"a": [1, null]}')).toBe('{"a": [1, null]}');
    expect(columnJson(builtin(1042), "ab   ")).toBe('"ab   "');
    expect(columnJson(TEXT, 'say "hi"\\\n\u00e9\u{1f600}')).toBe(JSON.stringify('say "hi"\\\n\u00e9\u{1f600}'));
    expect(columnJson(MOOD, "happy")).toBe('"happy"');
    expect(columnJson({ kind: "domain", oid: 90003, name: "positive", base: INT8 }, "12")).toBe("12");
    expect(columnJson({ kind: "other", oid: 90004, name: "int4range" }, "[1,5)")).toBe('"[1,5)"');
    expect(columnJson(INT4, null)).toBe("null");
  });

  it("encodes bytea as base64, from hex or escape format", () => {
    expect(columnJson(builtin(17), "\\x68656c6c6f")).toBe('"aGVsbG8="');
    expect(columnJson(builtin(17), "\\x")).toBe('""');
    expect(columnJson(builtin(17), "h\\\\i\\000")).toBe(`"${Buffer.from("h\\i\0").toString("base64")}"`);
    expect(() => columnJson(builtin(17), "\\x6")).toThrow(ColumnValueError);
  });
});

describe("dates and times", () => {
  const date = builtin(1082);
  const timestamp = builtin(1114);
  const timestamptz = builtin(1184);

  it("writes ISO 8601, timestamptz in UTC with Z", () => {
    expect(columnJson(date, "2026-12-02")).toBe('"2026-12-02"');
    expect(columnJson(timestamp, "2026-12-02 05:00:00.123456")).toBe('"2026-12-02T05:00:00.123456"');
    expect(columnJson(timestamp, "2026-12-02 05:00:00")).toBe('"2026-12-02T05:00:00"');
    expect(columnJson(timestamptz, "2026-12-02 05:00:00.123456+00")).toBe('"2026-12-02T05:00:00.123456Z"');
    expect(columnJson(timestamptz, "2026-12-02 10:30:00+05:30")).toBe('"2026-12-02T10:30:00+05:30"');
    expect(columnJson(timestamptz, "2026-12-02 00:00:00-08")).toBe('"2026-12-02T00:00:00-08:00"');
    expect(columnJson(timestamptz, "2026-12-02 05:00:00+00")).toBe('"2026-12-02T05:00:00Z"');
    expect(columnJson(timestamptz, "2026-12-02 05:00:00.5+00")).toBe('"2026-12-02T05:00:00.5Z"');
    expect(columnJson(timestamptz, "10000-01-01 00:00:00+00")).toBe('"10000-01-01T00:00:00Z"');
  });

  it("reads the common UTC timestamptz text by a fast path that refuses what the full reader refuses", () => {
    for (const text of ["2026-12-02 05:00:00.+00", "2026-12-02T05:00:00+00", "2026-12-02 05:00:0x+00", "2026-12-02 05:00:00.12a+00", "2026/12/02 05:00:00+00"]) {
      expect(() => columnJson(timestamptz, text), text).toThrow(ColumnValueError);
    }
  });

  it("numbers BC years astronomically and keeps the infinities", () => {
    expect(columnJson(date, "0044-03-15 BC")).toBe('"-0043-03-15"');
    expect(columnJson(date, "0001-01-01 BC")).toBe('"0000-01-01"');
    expect(columnJson(date, "4714-11-24 BC")).toBe('"-4713-11-24"');
    expect(columnJson(date, "10000-01-01")).toBe('"10000-01-01"');
    expect(columnJson(timestamptz, "0044-03-15 12:00:00+00 BC")).toBe('"-0043-03-15T12:00:00Z"');
    expect(columnJson(date, "infinity")).toBe('"infinity"');
    expect(columnJson(timestamptz, "-infinity")).toBe('"-infinity"');
  });

  it("refuses another DateStyle or a mismatched shape", () => {
    expect(() => columnJson(date, "12/02/2026")).toThrow(ColumnValueError);
    expect(() => columnJson(timestamp, "2026-12-02 05:00:00+00")).toThrow(ColumnValueError);
    expect(() => columnJson(timestamptz, "2026-12-02 05:00:00")).toThrow(ColumnValueError);
    expect(() => columnJson(date, "2026-12-02 05:00:00")).toThrow(ColumnValueError);
  });

  it("keeps time, timetz and interval as printed", () => {
    expect(columnJson(builtin(1083), "05:00:00.5")).toBe('"05:00:00.5"');
    expect(columnJson(builtin(1266), "05:00:00+05:30")).toBe('"05:00:00+05:30"');
    expect(columnJson(builtin(1186), "P1Y2M3DT4H5M6S")).toBe('"P1Y2M3DT4H5M6S"');
  });
});

describe("array literals", () => {
  it("reads empty, one- and multi-dimensional arrays", () => {
    expect(columnJson(INT4_ARRAY, "{}")).toBe("[]");
    expect(columnJson(INT4_ARRAY, "{1,2,3}")).toBe("[1,2,3]");
    expect(columnJson(INT4_ARRAY, "{{1,2},{3,4}}")).toBe("[[1,2],[3,4]]");
    expect(columnJson(INT4_ARRAY, "{{{1},{2}},{{3},{4}}}")).toBe("[[[1],[2]],[[3],[4]]]");
    expect(columnJson(builtin(1016), "{9007199254740993,-1}")).toBe("[9007199254740993,-1]");
  });

  it("drops a lower-bounds prefix", () => {
    expect(columnJson(INT4_ARRAY, "[0:1]={1,2}")).toBe("[1,2]");
    expect(columnJson(INT4_ARRAY, "[0:1][-1:0]={{1,2},{3,4}}")).toBe("[[1,2],[3,4]]");
  });

  it("reads NULL elements, quoting and backslash escapes", () => {
    expect(columnJson(TEXT_ARRAY, '{a,NULL,"NULL",null,"",""}')).toBe('["a",null,"NULL",null,"",""]');
    expect(columnJson(TEXT_ARRAY, '{"a,b","say \\"hi\\"","back\\\\slash","{brace}"," pad "}')).toBe(
      JSON.stringify(["a,b", 'say "hi"', "back\\slash", "{brace}", " pad "]),
    );
    expect(columnJson(TEXT_ARRAY, '{"line\nbreak",é,"\u{1f600}"}')).toBe(JSON.stringify(["line\nbreak", "é", "\u{1f600}"]));
    // array_in's forms array_out never prints: spaces around elements, escapes outside quotes.
    expect(columnJson(TEXT_ARRAY, "{ a , b\\,c ,\\NULL}")).toBe('["a","b,c","NULL"]');
    expect(columnJson(INT4_ARRAY, "{NULL,1}")).toBe("[null,1]");
  });

  it("maps elements by their type: enums, domains, bytea, json, dates", () => {
    expect(columnJson(array(MOOD), "{happy,sad}")).toBe('["happy","sad"]');
    expect(columnJson(array({ kind: "domain", oid: 90003, name: "positive", base: INT4 }), "{1,NULL}")).toBe("[1,null]");
    expect(columnJson(builtin(1001), '{"\\\\x6869",NULL}')).toBe('["aGk=",null]');
    expect(columnJson(builtin(3807), '{"{\\"a\\": 1}","[1, 2]",NULL}')).toBe('[{"a": 1},[1, 2],null]');
    expect(columnJson(builtin(1185), '{"2026-12-02 05:00:00+00","0044-03-15 12:00:00+00 BC"}')).toBe(
      '["2026-12-02T05:00:00Z","-0043-03-15T12:00:00Z"]',
    );
  });

  it("splits box arrays on ';', keeping the commas inside a box", () => {
    expect(columnJson(builtin(1020), "{(1,1),(0,0);(3,3),(2,2)}")).toBe('["(1,1),(0,0)","(3,3),(2,2)"]');
  });

  it("reads an array of a domain over an array", () => {
    const intList: ColumnType = { kind: "domain", oid: 90005, name: "int_list", base: INT4_ARRAY };
    expect(columnJson(array(intList), '{"{1,2}",NULL,"{}"}')).toBe("[[1,2],null,[]]");
  });

  it("refuses malformed literals", () => {
    for (const text of ["", "1,2", "{1,2", "{1,,2}", "{1 2 3", '{"a}', "{1}}", "{1},", "[0:1]{1,2}", "{{1},2", "{a\"b\"}"]) {
      expect(() => columnJson(TEXT_ARRAY, text), text).toThrow(ColumnValueError);
    }
  });
});

describe("TypeCatalog", () => {
  /** A stand-in for postgres.js that answers pg_type queries from rows and counts them. */
  function fakeSql(rows: Array<Record<string, unknown>>) {
    const queries: number[][] = [];
    const sql = ((_strings: TemplateStringsArray, oids: string) => {
      const asked = oids.slice(1, -1).split(",").map(Number);
      queries.push(asked);
      return Promise.resolve(rows);
    }) as unknown as Sql;
    return { sql, queries };
  }
  const row = (oid: number, typname: string, typtype: string, extra: Record<string, unknown> = {}) => ({
    oid, typname, typtype, typelem: 0, typbasetype: 0, typcategory: "U", typdelim: ",", is_array: false, ...extra,
  });

  it("resolves builtins without a query", async () => {
    const { sql, queries } = fakeSql([]);
    const catalog = new TypeCatalog(sql);
    expect(await catalog.types([23, 1009, 3802])).toMatchObject([{ kind: "base", format: "integer" }, { kind: "array" }, { format: "json" }]);
    expect(queries).toEqual([]);
  });

  it("asks once per batch of new OIDs, caches, and forgets", async () => {
    const { sql, queries } = fakeSql([
      row(90001, "mood", "e", { typcategory: "E" }),
      row(90002, "_mood", "b", { typelem: 90001, typcategory: "A", is_array: true }),
      row(90003, "positive", "d", { typbasetype: 23, typcategory: "N" }),
      row(23, "int4", "b", { typcategory: "N" }),
    ]);
    const catalog = new TypeCatalog(sql);
    const [moods, positive, again] = await Promise.all([catalog.types([90002, 90003]), catalog.type(90003), catalog.type(90002)]);
    expect(queries).toEqual([[90002, 90003]]);
    expect(moods![0]).toMatchObject({ kind: "array", delimiter: ",", element: { kind: "enum", name: "mood" } });
    expect(positive).toMatchObject({ kind: "domain", base: { kind: "base", format: "integer" } });
    expect(again).toBe(moods![0]);
    expect(columnJson(moods![0]!, "{happy,NULL}")).toBe('["happy",null]');
    expect(catalog.known(90001)).toMatchObject({ kind: "enum" });
    await catalog.type(90002);
    expect(queries).toHaveLength(1);
    catalog.forget();
    expect(catalog.known(90002)).toBeUndefined();
    await catalog.type(90002);
    expect(queries).toHaveLength(2);
  });

  it("asks again after a failed query", async () => {
    let calls = 0;
    const sql = (() => (calls += 1) === 1 ? Promise.reject(new Error("connection lost")) : Promise.resolve([row(90001, "mood", "e")])) as unknown as Sql;
    const catalog = new TypeCatalog(sql);
    await expect(catalog.type(90001)).rejects.toThrow("connection lost");
    expect(await catalog.type(90001)).toMatchObject({ kind: "enum", name: "mood" });
    expect(calls).toBe(2);
  });

  it("treats an OID pg_type does not hold as text, without caching it", async () => {
    const { sql } = fakeSql([]);
    const catalog = new TypeCatalog(sql);
    expect(await catalog.type(99999)).toMatchObject({ kind: "other" });
    expect(catalog.known(99999)).toBeUndefined();
  });
});
