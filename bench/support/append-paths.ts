/**
 * The ways an append can reach the WAL, as the append-path benchmark writes
 * them. Each writes one transaction per call, as one autocommit statement
 * (one round trip), so the paths differ only in what the server does.
 *
 *   logical message   tributary.append / append_many (the product): validation
 *                     in PL/pgSQL, then pg_logical_emit_message(true, ...).
 *                     Once as the superuser (no privilege check applies),
 *                     once as a writer with per-stream grants.
 *   unsigned append   the append of migration 0001, before messages were signed
 *                     and limits read from tributary.limits (benchmark
 *                     scaffolding, bench_unsigned_append): what the trust
 *                     protection of 0006 costs, side by side.
 *   raw message       pg_logical_emit_message(true, ...) with the same payload
 *                     and no validation: how much of the above is PL/pgSQL.
 *   outbox row        INSERT into bench_outbox (benchmark scaffolding, created
 *                     here, not product schema); a consumer deletes the rows
 *                     it has "relayed" (see outbox-consumer.ts).
 */
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { BENCH_PARTITIONS, type BenchEvent } from "./event-payload.ts";

export interface AppendPath {
  readonly name: string;
  readonly usesOutbox: boolean;
  /** Connect as this login role instead of the superuser (see bench-roles.ts). */
  readonly role?: "bench_writer";
  /** Writes `events` in one transaction; returns the ids of the events. */
  write(sql: Sql, events: readonly BenchEvent[]): Promise<string[]>;
}

const messagePayload = (e: BenchEvent, id: string) =>
  `${JSON.stringify([e.stream, e.key, BENCH_PARTITIONS, id, e.type])}\n${e.headers}\n${e.data}`;

export const logicalMessagePath: AppendPath = {
  name: "logical message (tributary.append)",
  usesOutbox: false,
  async write(sql, events) {
    if (events.length === 1) {
      const e = events[0]!;
      const [row] = await sql<{ id: string }[]>`
        select tributary.append(${e.stream}, ${e.key}, ${e.type}, ${e.data}::text::jsonb, ${e.headers}::text::jsonb)::text as id`;
      return [row!.id];
    }
    const [row] = await sql<{ ids: string[] }[]>`
      select tributary.append_many(
        ${events.map((e) => e.stream)}::text[], ${events.map((e) => e.key)}::text[],
        ${events.map((e) => e.type)}::text[], ${events.map((e) => e.data)}::text[]::jsonb[],
        ${events.map((e) => e.headers)}::text[]::jsonb[])::text[] as ids`;
    return row!.ids;
  },
};

export const unsignedAppendPath: AppendPath = {
  name: "unsigned append (0001's, no signature)",
  usesOutbox: false,
  async write(sql, events) {
    if (events.length === 1) {
      const e = events[0]!;
      const [row] = await sql<{ id: string }[]>`
        select bench_unsigned_append(${e.stream}, ${e.key}, ${e.type}, ${e.data}::text::jsonb, ${e.headers}::text::jsonb)::text as id`;
      return [row!.id];
    }
    const [row] = await sql<{ ids: string[] }[]>`
      select array_agg(bench_unsigned_append(s, k, t, d, h) order by n)::text[] as ids
        from unnest(${events.map((e) => e.stream)}::text[], ${events.map((e) => e.key)}::text[],
                    ${events.map((e) => e.type)}::text[], ${events.map((e) => e.data)}::text[]::jsonb[],
                    ${events.map((e) => e.headers)}::text[]::jsonb[]) with ordinality as x(s, k, t, d, h, n)`;
    return row!.ids;
  },
};

/**
 * tributary.append as migration 0001 defined it (SECURITY INVOKER, limit from
 * a GUC, unsigned message), for the side-by-side cost of 0006's protection.
 */
export async function createUnsignedAppend(sql: Sql): Promise<void> {
  await sql.unsafe(`
    create or replace function bench_unsigned_append(stream text, key text, type text, data jsonb, headers jsonb default '{}')
    returns uuid language plpgsql as $$
    declare
      id uuid := gen_random_uuid();
      partitions int;
      data_text text;
      max_bytes int := coalesce(nullif(current_setting('tributary.max_data_bytes', true), '')::int, 1048576);
    begin
      perform tributary.validate_stream_name(stream);
      if key is null or key = '' then raise exception 'event key must be a non-empty string' using errcode = '22023'; end if;
      if type is null or type = '' then raise exception 'event type must be a non-empty string' using errcode = '22023'; end if;
      if data is null then raise exception 'event data must not be NULL' using errcode = '22023'; end if;
      if headers is null or jsonb_typeof(headers) <> 'object' then raise exception 'event headers must be a JSON object' using errcode = '22023'; end if;
      data_text := data::text;
      if octet_length(data_text) > max_bytes then raise exception 'event data too large' using errcode = '22023'; end if;
      partitions := tributary.stream_partitions(stream);
      perform pg_logical_emit_message(true, 'tributary',
        json_build_array(stream, key, partitions, id, type)::text || E'\n' || headers::text || E'\n' || data_text);
      return id;
    end $$`);
}

/** The same calls as a writer holding one write grant per stream: append's per-stream check runs in full. */
export const grantedWriterPath: AppendPath = {
  ...logicalMessagePath,
  name: "logical message, as a granted writer",
  role: "bench_writer",
};

export const rawMessagePath: AppendPath = {
  name: "raw pg_logical_emit_message (no validation)",
  usesOutbox: false,
  async write(sql, events) {
    const ids = events.map(() => randomUUID());
    if (events.length === 1) {
      await sql`select pg_logical_emit_message(true, 'tributary', ${messagePayload(events[0]!, ids[0]!)}::text)`;
    } else {
      await sql`select count(pg_logical_emit_message(true, 'tributary', m)) from unnest(${events.map((e, i) => messagePayload(e, ids[i]!))}::text[]) m`;
    }
    return ids;
  },
};

export const outboxPath: AppendPath = {
  name: "outbox row (insert into bench_outbox)",
  usesOutbox: true,
  async write(sql, events) {
    const ids = events.map(() => randomUUID());
    if (events.length === 1) {
      const e = events[0]!;
      await sql`
        insert into bench_outbox (id, stream, key, type, data, headers)
        values (${ids[0]!}::uuid, ${e.stream}, ${e.key}, ${e.type}, ${e.data}::text::jsonb, ${e.headers}::text::jsonb)`;
    } else {
      await sql`
        insert into bench_outbox (id, stream, key, type, data, headers)
        select * from unnest(${ids}::uuid[], ${events.map((e) => e.stream)}::text[], ${events.map((e) => e.key)}::text[],
                             ${events.map((e) => e.type)}::text[], ${events.map((e) => e.data)}::text[]::jsonb[],
                             ${events.map((e) => e.headers)}::text[]::jsonb[])`;
    }
    return ids;
  },
};

/** A fresh outbox table, as an outbox-based append would have (id is what the relay deletes by). */
export async function recreateOutbox(sql: Sql): Promise<void> {
  await sql`drop table if exists bench_outbox`;
  await sql`
    create table bench_outbox (
      id uuid primary key,
      stream text not null,
      key text not null,
      type text not null,
      data jsonb not null,
      headers jsonb not null
    )`;
}

export interface OutboxSize {
  readonly tableBytes: number;
  readonly indexBytes: number;
  readonly liveRows: number;
  readonly deadRows: number;
  readonly autovacuums: number;
}

export async function outboxSize(sql: Sql): Promise<OutboxSize> {
  const [row] = await sql<{ table_bytes: string; index_bytes: string; live: string; dead: string; autovacuums: string }[]>`
    select pg_table_size('bench_outbox')::text as table_bytes, pg_indexes_size('bench_outbox')::text as index_bytes,
           n_live_tup::text as live, n_dead_tup::text as dead, autovacuum_count::text as autovacuums
      from pg_stat_user_tables where relname = 'bench_outbox'`;
  return {
    tableBytes: Number(row!.table_bytes),
    indexBytes: Number(row!.index_bytes),
    liveRows: Number(row!.live),
    deadRows: Number(row!.dead),
    autovacuums: Number(row!.autovacuums),
  };
}
