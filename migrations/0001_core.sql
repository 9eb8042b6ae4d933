-- Tributary core schema: streams, the append-only event table, the relay's
-- checkpoint and per-partition offset counters, and the public SQL API
-- (create_stream, append, append_many).
--
-- How an append reaches the stream (see README "Why logical messages"):
-- append() validates the event and writes a *transactional* logical message
-- (pg_logical_emit_message(true, ...)) into the WAL of the caller's
-- transaction. Nothing is stored in a table by the writer, so there is no
-- outbox to clean up and no bloat. A rolled-back transaction's message is never
-- decoded. The relay reads the messages through the replication slot in commit
-- order and assigns dense offsets (docs/ARCHITECTURE.md invariants 1-3).

create table tributary.streams (
  name        text primary key,
  partitions  int not null check (partitions between 1 and 10000),
  created_at  timestamptz not null default now()
);

-- The stream table. One row per event; (stream, partition, "offset") is the
-- primary key, so reading one partition from an offset is an index range scan.
-- Rows are only ever inserted by the relay (no updates, no deletes: no bloat).
create table tributary.events (
  stream        text not null,
  partition     int not null,
  "offset"      bigint not null,
  id            uuid not null,
  key           text not null,
  type          text not null,
  data          jsonb not null,
  headers       jsonb not null,
  committed_at  timestamptz not null,
  primary key (stream, partition, "offset")
) with (fillfactor = 100);

create function tributary.forbid_event_changes() returns trigger
language plpgsql as $$
begin
  raise exception 'tributary.events is append-only: % is not allowed', tg_op
    using errcode = '0A000',
          hint = 'Events are immutable. Append a compensating event instead.';
end $$;

create trigger events_append_only
  before update or delete or truncate on tributary.events
  for each statement execute function tributary.forbid_event_changes();

-- Next offset per (stream, partition). Written only by the relay, in the same
-- transaction as the events it numbers (invariant 2).
create table tributary.partition_offsets (
  stream       text not null,
  partition    int not null,
  next_offset  bigint not null,
  primary key (stream, partition)
);

-- The relay's checkpoint, one row per replication slot (invariant 4).
--   commit_lsn / end_lsn: commit record start / end of the last transaction
--     fully written to the stream; end_lsn is what the slot is acknowledged to.
--   partial_commit_lsn / partial_events: a transaction too large for one batch
--     is written in chunks; these say how many of its events are already in.
--   version: compare-and-set token; every relay write bumps it, so a relay
--     holding a stale version (a zombie) cannot write.
create table tributary.relay_checkpoints (
  slot_name           text primary key,
  plugin              text not null,
  commit_lsn          pg_lsn not null default '0/0',
  end_lsn             pg_lsn not null default '0/0',
  partial_commit_lsn  pg_lsn,
  partial_events      bigint not null default 0,
  version             bigint not null default 0,
  relay_id            text,
  updated_at          timestamptz not null default now()
);

-- ---------------------------------------------------------------------------
-- Validation. Each rule raises SQLSTATE 22023 with CONSTRAINT set to the rule
-- name, so clients in any language can map it to a typed error.

create function tributary.validate_stream_name(stream text) returns void
language plpgsql immutable as $$
begin
  if stream is null or stream !~ '^[A-Za-z0-9._-]{1,200}$' then
    raise exception 'invalid stream name %: a stream name is 1 to 200 characters of A-Z a-z 0-9 . _ -',
      coalesce(quote_literal(left(stream, 210)), 'NULL')
      using errcode = '22023', constraint = 'tributary_stream_name';
  end if;
end $$;

create function tributary.max_data_bytes() returns int
language plpgsql stable as $$
declare
  setting text := nullif(current_setting('tributary.max_data_bytes', true), '');
begin
  if setting is null then
    return 1048576;
  end if;
  if setting !~ '^\s*[0-9]{1,10}\s*$' or setting::bigint < 1 or setting::bigint > 1073741823 then
    raise exception 'tributary.max_data_bytes is %, not a number of bytes between 1 and 1073741823', quote_literal(setting)
      using errcode = '22023', constraint = 'tributary_max_data_bytes',
            hint = 'Set it to a plain byte count, e.g. ALTER DATABASE ... SET tributary.max_data_bytes = 2097152';
  end if;
  return setting::int;
end $$;

-- ---------------------------------------------------------------------------
-- Public API

create function tributary.create_stream(name text, partitions int default 8)
returns void language plpgsql as $$
declare
  existing int;
begin
  perform tributary.validate_stream_name(name);
  if partitions is null or partitions < 1 or partitions > 10000 then
    raise exception 'invalid partition count % for stream %: use 1 to 10000', partitions, name
      using errcode = '22023', constraint = 'tributary_partitions';
  end if;
  insert into tributary.streams (name, partitions) values (name, partitions)
    on conflict on constraint streams_pkey do nothing;
  select s.partitions into existing from tributary.streams s where s.name = create_stream.name;
  if existing <> partitions then
    raise exception 'stream % already exists with % partitions, not %', name, existing, partitions
      using errcode = '22023', constraint = 'tributary_partitions',
            hint = 'Partition counts are fixed at creation: keys would move between partitions.';
  end if;
end $$;

-- The partition count of a stream, creating the stream with the default
-- partition count when it does not exist yet.
create function tributary.stream_partitions(stream text) returns int
language plpgsql as $$
declare
  n int;
begin
  select s.partitions into n from tributary.streams s where s.name = stream;
  if n is null then
    perform tributary.validate_stream_name(stream);
    insert into tributary.streams (name, partitions) values (stream, 8)
      on conflict on constraint streams_pkey do nothing;
    select s.partitions into n from tributary.streams s where s.name = stream;
  end if;
  return n;
end $$;

create function tributary.append(
  stream text, key text, type text, data jsonb, headers jsonb default '{}'
) returns uuid language plpgsql as $$
declare
  id uuid := gen_random_uuid();
  partitions int;
  data_text text;
begin
  perform tributary.validate_stream_name(stream);
  if key is null or key = '' then
    raise exception 'event key must be a non-empty string (stream %)', stream
      using errcode = '22023', constraint = 'tributary_key';
  end if;
  if type is null or type = '' then
    raise exception 'event type must be a non-empty string (stream %)', stream
      using errcode = '22023', constraint = 'tributary_type';
  end if;
  if data is null then
    raise exception 'event data must not be NULL (stream %); use ''null''::jsonb for a JSON null', stream
      using errcode = '22023', constraint = 'tributary_data';
  end if;
  if headers is null or jsonb_typeof(headers) <> 'object' then
    raise exception 'event headers must be a JSON object (stream %)', stream
      using errcode = '22023', constraint = 'tributary_headers';
  end if;
  data_text := data::text;
  if octet_length(data_text) > tributary.max_data_bytes() then
    raise exception 'event data is % bytes, over the limit of % bytes (stream %)',
      octet_length(data_text), tributary.max_data_bytes(), stream
      using errcode = '22023', constraint = 'tributary_data_size',
            hint = 'Raise the limit with: ALTER DATABASE ... SET tributary.max_data_bytes = <bytes>';
  end if;
  partitions := tributary.stream_partitions(stream);
  -- Wire format read by the relay (packages/core event-message.ts):
  --   line 1: JSON array [stream, key, partitions, id, type]
  --   line 2: headers (jsonb text has no raw newlines)
  --   rest:   data
  perform pg_logical_emit_message(
    true, 'tributary',
    json_build_array(stream, key, partitions, id, type)::text || E'\n' || headers::text || E'\n' || data_text);
  return id;
end $$;

-- Appends several events in array order; returns their ids in the same order.
create function tributary.append_many(
  streams text[], keys text[], types text[], datas jsonb[], headers jsonb[] default null
) returns uuid[] language plpgsql as $$
declare
  ids uuid[] := '{}';
  n int := coalesce(cardinality(streams), 0);
begin
  if coalesce(cardinality(keys), 0) <> n or coalesce(cardinality(types), 0) <> n
     or coalesce(cardinality(datas), 0) <> n
     or (headers is not null and cardinality(headers) <> n) then
    raise exception 'append_many: streams, keys, types, datas (and headers when given) must have the same length'
      using errcode = '22023', constraint = 'tributary_batch_shape';
  end if;
  for i in 1 .. n loop
    ids := ids || tributary.append(streams[i], keys[i], types[i], datas[i],
                                   coalesce(headers[i], '{}'::jsonb));
  end loop;
  return ids;
end $$;

-- What the relay reads from. The publication stays empty: append() writes
-- logical messages, which pgoutput sends regardless of publications, and the
-- stream table must never be in a publication the relay reads (it would read
-- its own writes). The slot itself is created by `tributary migrate` right
-- after this file (a slot cannot be created in a transaction that wrote).
create publication tributary_relay;
