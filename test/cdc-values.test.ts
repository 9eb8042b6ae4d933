/**
 * Column values of captured tables (issue 12): a row with one column of each
 * kind of type is inserted, decoded by pgoutput (pg_logical_slot_get_binary_changes,
 * in a session with the replication settings), each column's text mapped by
 * columnJson with types from TypeCatalog, and the JSON text parsed by
 * PostgreSQL as jsonb and compared with the jsonb expected by hand.
 *
 * The decoders print a value with its type's output function. `col::text`
 * is the same text except where a cast to text exists: boolean ('true', not
 * 't'), char(n) (padding trimmed) and inet (netmask always shown). The test
 * takes the decoder's text and checks `col::text` against it.
 */
import postgres, { type Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { columnJson, TypeCatalog } from "../services/relay/src/internal/cdc/column-json.ts";
import { BUILTIN_TYPES } from "../services/relay/src/internal/cdc/type-catalog.ts";
import { PgoutputChangeDecoder } from "@tributary/wal";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";

const SESSION_SETTINGS = [
  "set datestyle = 'ISO, MDY'",
  "set timezone = 'UTC'",
  "set intervalstyle = 'iso_8601'",
  "set extra_float_digits = 1",
  "set bytea_output = 'hex'",
];

const TEXT_VALUE = `say "hi" \\ back\\slash\nnew line\ttab \u00e9 \u{1f600} '`;

/** [column, type, SQL value, expected jsonb text]. */
const COLUMNS: ReadonlyArray<readonly [string, string, string, string]> = [
  ["c_int2", "int2", "-32768", "-32768"],
  ["c_int4", "int4", "2147483647", "2147483647"],
  ["c_int8", "int8", "9007199254740993", "9007199254740993"],
  ["c_int8_min", "int8", "-9223372036854775808", "-9223372036854775808"],
  ["c_oid", "oid", "4294967295", "4294967295"],
  ["c_numeric", "numeric", "1.10", `"1.10"`],
  ["c_numeric_big", "numeric", "12345678901234567890.000001", `"12345678901234567890.000001"`],
  ["c_numeric_nan", "numeric", "'NaN'", `"NaN"`],
  ["c_float8_nan", "float8", "'NaN'", `"NaN"`],
  ["c_float8_big", "float8", "1e300", "1e300"],
  ["c_float8_ninf", "float8", "'-Infinity'", `"-Infinity"`],
  ["c_real", "real", "1.5", "1.5"],
  ["c_bool", "boolean", "true", "true"],
  ["c_bool_false", "boolean", "false", "false"],
  ["c_text", "text", `'${TEXT_VALUE.replaceAll("'", "''")}'`, JSON.stringify(TEXT_VALUE)],
  ["c_varchar", "varchar(10)", "'v'", `"v"`],
  ["c_char", "char(5)", "'ab'", `"ab   "`],
  ["c_name", "name", "'a name'", `"a name"`],
  ["c_jsonb", "jsonb", `'{"a": {"b": [1, 2.50, null, true, {"c": "x\\"y"}]}, "big": 12345678901234567890}'`, `{"a": {"b": [1, 2.50, null, true, {"c": "x\\"y"}]}, "big": 12345678901234567890}`],
  ["c_json", "json", `'{"k": [1, {"z": null}],  "k2": "\\u00e9"}'`, `{"k": [1, {"z": null}], "k2": "é"}`],
  ["c_int_matrix", "int[]", "'{{1,2},{3,4}}'", "[[1,2],[3,4]]"],
  ["c_int_bounds", "int[]", "'[0:1]={7,8}'", "[7,8]"],
  ["c_int_empty", "int[]", "'{}'", "[]"],
  ["c_text_array", "text[]", `array['a', null, 'NULL', 'with "quote"', 'back\\slash', 'comma,brace}', ' spaced ', '']`, `["a", null, "NULL", "with \\"quote\\"", "back\\\\slash", "comma,brace}", " spaced ", ""]`],
  ["c_box_array", "box[]", "array[box '((1,1),(0,0))', box '((3,3),(2,2))']", `["(1,1),(0,0)", "(3,3),(2,2)"]`],
  ["c_bytea", "bytea", "'hello'::bytea", `"aGVsbG8="`],
  ["c_timestamptz", "timestamptz", "'2026-12-02 05:00:00.123456+00'", `"2026-12-02T05:00:00.123456Z"`],
  ["c_timestamptz_bc", "timestamptz", "'0044-03-15 12:00:00+00 BC'", `"-0043-03-15T12:00:00Z"`],
  ["c_timestamp", "timestamp", "'2026-12-02 05:00:00.123456'", `"2026-12-02T05:00:00.123456"`],
  ["c_timestamp_ninf", "timestamp", "'-infinity'", `"-infinity"`],
  ["c_date", "date", "'2026-12-02'", `"2026-12-02"`],
  ["c_date_bc", "date", "'0044-03-15 BC'", `"-0043-03-15"`],
  ["c_date_inf", "date", "'infinity'", `"infinity"`],
  ["c_time", "time", "'05:00:00.5'", `"05:00:00.5"`],
  ["c_timetz", "timetz", "'05:00:00+05:30'", `"05:00:00+05:30"`],
  ["c_interval", "interval", "'1 year 2 months 3 days 04:05:06'", `"P1Y2M3DT4H5M6S"`],
  ["c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`],
  ["c_inet", "inet", "'192.168.0.1'", `"192.168.0.1"`],
  ["c_int4range", "int4range", "'[1,5)'", `"[1,5)"`],
  ["c_pair", "pair", `row(1, 'x y')`, `"(1,\\"x y\\")"`],
  ["c_enum", "mood", "'happy'", `"happy"`],
  ["c_enum_array", "mood[]", "'{happy,sad,NULL}'", `["happy", "sad", null]`],
  ["c_domain", "positive", "42", "42"],
  ["c_domain_array", "positive[]", "'{1,NULL}'", "[1, null]"],
];

/** Where `col::text` is not the output function's text (a cast to text exists). */
const CAST_DIFFERS: Readonly<Record<string, string>> = { c_bool: "true", c_bool_false: "false", c_char: "ab", c_inet: "192.168.0.1/32" };

/** Columns compared as jsonb text as well, so that no digit is lost unseen. */
const EXACT_TEXT = new Set(["c_int8", "c_int8_min", "c_numeric", "c_numeric_big"]);

interface DecodedColumn {
  name: string;
  typeOid: number;
}

/** The inserts' columns and rows, decoded by the relay's pgoutput change decoder. */
function decodeInserts(messages: Buffer[]): { columns: DecodedColumn[]; rows: Array<Array<string | null>> } {
  const decoder = new PgoutputChangeDecoder();
  let columns: DecodedColumn[] = [];
  const rows: Array<Array<string | null>> = [];
  for (const change of messages.flatMap((message) => decoder.decode(message) ?? [])) {
    if (change.kind !== "insert") throw new Error(`unexpected ${change.kind}`);
    columns = change.columns.map(({ name, typeOid }) => ({ name, typeOid }));
    rows.push(change.columns.map((column) => column.text));
  }
  return { columns, rows };
}

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`CDC column values [${backend.name}]`, () => {
    let db: TestDatabase;
    /** One connection: the settings and the temporary slot live on it. */
    let session: Sql;
    /** The catalog's own pool. */
    let catalogSql: Sql;
    let columns: DecodedColumn[];
    let row: Array<string | null>;
    let nullRow: Array<string | null>;

    beforeAll(async () => {
      db = await createTestDatabase(backend, { migrate: false });
      session = postgres(db.url, { max: 1, onnotice: () => {} });
      catalogSql = postgres(db.url, { max: 1, onnotice: () => {} });
      for (const setting of SESSION_SETTINGS) await session.unsafe(setting);
      await session.unsafe(`
        create type mood as enum ('happy', 'sad');
        create domain positive as int check (value > 0);
        create type pair as (a int, b text);
        create table cdc_values (${COLUMNS.map(([name, type]) => `${name} ${type}`).join(", ")});
        create publication cdc_values for table cdc_values;
      `).simple();
      await session`select pg_create_logical_replication_slot(${`${db.slotName}_values`}, 'pgoutput', true)`;
      await session.unsafe(`insert into cdc_values values (${COLUMNS.map(([, , value]) => value).join(", ")})`);
      await session.unsafe(`insert into cdc_values default values`);
      const changes = await session<{ data: Buffer }[]>`
        select data from pg_logical_slot_get_binary_changes(${`${db.slotName}_values`}, null, null,
          'proto_version', '1', 'publication_names', 'cdc_values')`;
      const decoded = decodeInserts(changes.map((change) => change.data));
      columns = decoded.columns;
      [row, nullRow] = decoded.rows as [Array<string | null>, Array<string | null>];
    });
    afterAll(async () => {
      await catalogSql?.end({ timeout: 1 });
      await session?.end({ timeout: 1 });
      await db?.drop();
    });

    it("decodes one column per case, with the type OIDs pg_typeof gives", async () => {
      expect(columns.map((column) => column.name)).toEqual(COLUMNS.map(([name]) => name));
      for (const [i, column] of columns.entries()) {
        const [typed] = await session<{ oid: number; text: string }[]>`
          select pg_typeof(${session(column.name)})::oid as oid, ${session(column.name)}::text as text from cdc_values limit 1`;
        expect(typed!.oid, column.name).toBe(column.typeOid);
        expect(typed!.text, column.name).toBe(CAST_DIFFERS[column.name] ?? row[i]);
      }
    });

    it("maps every column to the JSON expected, as PostgreSQL parses it", async () => {
      let queries = 0;
      const counted = ((strings: TemplateStringsArray, ...values: never[]) => {
        queries += 1;
        return catalogSql(strings, ...values);
      }) as unknown as Sql;
      const catalog = new TypeCatalog(counted);
      const types = await catalog.types(columns.map((column) => column.typeOid));
      // mood, mood[], positive, positive[], pair, int4range: one query for all of them.
      expect(queries).toBe(1);
      await catalog.types(columns.map((column) => column.typeOid));
      expect(queries).toBe(1);
      for (const [i, [name, , , expected]] of COLUMNS.entries()) {
        const json = columnJson(types[i]!, row[i]!);
        expect(() => JSON.parse(json), `${name}: ${json}`).not.toThrow();
        const [parsed] = await session<{ same: boolean; got: string }[]>`
          select ${json}::text::jsonb = ${expected}::text::jsonb as same, ${json}::text::jsonb::text as got`;
        expect(parsed!.same, `${name}: ${json} (jsonb ${parsed!.got}), expected ${expected}`).toBe(true);
        if (EXACT_TEXT.has(name)) expect(parsed!.got, name).toBe(expected);
      }
    });

    it("maps SQL NULL to null in every column", async () => {
      const catalog = new TypeCatalog(catalogSql);
      const types = await catalog.types(columns.map((column) => column.typeOid));
      expect(nullRow).toEqual(columns.map(() => null));
      for (const [i, type] of types.entries()) {
        const [parsed] = await session<{ got: string }[]>`select ${columnJson(type, nullRow[i]!)}::text::jsonb::text as got`;
        expect(parsed!.got).toBe("null");
      }
    });

    it("holds the same builtin OIDs, array OIDs and delimiters as pg_type", async () => {
      const rows = await session<{ oid: number; typname: string; typarray: number; typdelim: string }[]>`
        select oid, typname::text, typarray, typdelim::text from pg_type
         where oid = any(${`{${BUILTIN_TYPES.map(([oid]) => oid).join(",")}}`}::oid[])`;
      const actual = new Map(rows.map((r) => [r.oid, r]));
      for (const [oid, name, , arrayOid, delimiter] of BUILTIN_TYPES) {
        expect(actual.get(oid), name).toEqual({ oid, typname: name, typarray: arrayOid, typdelim: delimiter ?? "," });
      }
    });
  });
}
