/**
 * bench:cdc's captured tables (benchmark scaffolding, not product schema):
 * ten columns of the types a captured row commonly holds, one of each path
 * of column-json.ts (integer, string, numeric as string, boolean,
 * timestamptz, json, uuid, text[], bytea as base64). Every value is computed
 * by the server from the row's id, so the writer sends only ids and spends
 * next to no CPU of the shared machine.
 */
import type { Sql, TransactionSql } from "postgres";

/** A connection or a transaction: the changes of one transaction go through the latter. */
export type Queries = Sql | TransactionSql;

/** Column list in table order. */
const COLUMNS = "id, account, name, amount, active, updated_at, attrs, ref, tags, payload";

/** The row of id `g` (a bigint expression); the report prints what it weighs in the WAL, in pgoutput and as event data. */
const ROW_OF = (g: string) => `
  ${g},
  (${g} * 7919 % 100000)::int4,
  'customer ' || ${g} || ' of region ' || (${g} % 97),
  ((${g} % 900000) + 99) / 100.0,
  ${g} % 3 = 0,
  timestamptz '2026-11-22 04:22:07.172+00' + ${g} * interval '1 second',
  jsonb_build_object('tier', case when ${g} % 3 = 0 then 'gold' else 'standard' end, 'sku', 'SKU-' || (${g} * 31 % 10000),
                     'qty', 1 + ${g} % 4, 'price', ((${g} % 9000) + 99) / 100.0, 'gift', ${g} % 5 = 0),
  md5(${g}::text)::uuid,
  array['tag-' || (${g} % 7), 'tag-' || (${g} % 11), 'region-' || (${g} % 97)],
  decode(md5(${g}::text), 'hex')`;

/** A name the statements below may splice in (they are the benchmark's own, never user input). */
function checkName(table: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`not a plain table name: ${table}`);
  return table;
}

export async function createCdcTable(sql: Sql, table: string): Promise<void> {
  await sql.unsafe(`
    create table ${checkName(table)} (
      id         int8 primary key,
      account    int4 not null,
      name       text not null,
      amount     numeric(12, 2) not null,
      active     bool not null,
      updated_at timestamptz not null,
      attrs      jsonb not null,
      ref        uuid not null,
      tags       text[] not null,
      payload    bytea not null
    )`);
}

/** The columns' types, for the report. */
export const CDC_TABLE_SHAPE = "int8 key, int4, text, numeric(12,2), bool, timestamptz, jsonb, uuid, text[], bytea";

/** Inserts ids [from, to): returns the rows inserted. */
export async function insertRows(sql: Queries, table: string, from: bigint, to: bigint): Promise<number> {
  const result = await sql.unsafe(
    `insert into ${checkName(table)} (${COLUMNS}) select ${ROW_OF("g")} from generate_series($1::int8, $2::int8 - 1) g`,
    [from.toString(), to.toString()],
  );
  return result.count;
}

/** Updates ids [from, to) (five columns change, the key does not): returns the rows updated. */
export async function updateRows(sql: Queries, table: string, from: bigint, to: bigint): Promise<number> {
  const result = await sql.unsafe(
    `update ${checkName(table)}
        set amount = amount + 1, active = not active, updated_at = updated_at + interval '1 minute',
            attrs = jsonb_set(attrs, '{qty}', to_jsonb((attrs->>'qty')::int + 1)), tags[1] = 'updated'
      where id >= $1::int8 and id < $2::int8`,
    [from.toString(), to.toString()],
  );
  return result.count;
}

/** Deletes ids [from, to): returns the rows deleted. */
export async function deleteRows(sql: Queries, table: string, from: bigint, to: bigint): Promise<number> {
  const result = await sql.unsafe(`delete from ${checkName(table)} where id >= $1::int8 and id < $2::int8`, [from.toString(), to.toString()]);
  return result.count;
}

/** Fills `table` with ids 1..rows in statements of `perStatement` rows, then ANALYZE (capture() estimates the rows). */
export async function fillTable(sql: Sql, table: string, rows: number, perStatement = 50_000): Promise<void> {
  for (let from = 1; from <= rows; from += perStatement) {
    await insertRows(sql, table, BigInt(from), BigInt(Math.min(rows + 1, from + perStatement)));
  }
  await sql.unsafe(`analyze ${checkName(table)}`);
}
