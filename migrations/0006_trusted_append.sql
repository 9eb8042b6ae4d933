-- Trusted appends: only tributary.append produces events, whatever any role
-- can execute; the limits append enforces are the operator's and hold for
-- every role; a committed message that cannot become an event is set aside,
-- never a reason to stop (docs/ARCHITECTURE.md invariants 12 and 13).
--
-- Why a signature. pg_logical_emit_message is executable by PUBLIC, so the
-- 'tributary' prefix proves nothing about who wrote a message. append() now
-- signs what it emits with HMAC-SHA256 under a secret key that only the
-- schema owner and the relay can read; the relay turns a message into an
-- event only when the signature verifies. Wire format (packages/core
-- event-message.ts):
--   line 0: "tributary-v1 <key id> <hex HMAC-SHA256 of everything after this line>"
--   line 1: JSON array [stream, key, partitions, id, type]
--   line 2: headers (jsonb text has no raw newlines)
--   rest:   data
-- The HMAC is computed with the built-in sha256() from pads precomputed per
-- key, so no extension (pgcrypto) is needed.
--
-- Also here: the relay's lease (a standby takes over a relay that stopped
-- making progress), the table of set-aside messages, and the rule that one
-- slot feeds a database's streams.

-- ---------------------------------------------------------------------------
-- Signing keys. Readable only by the owner (and the relay, granted in 0007).

create table tributary.signing_keys (
  id          int primary key,
  secret      bytea not null check (octet_length(secret) = 32),
  -- HMAC's inner and outer pads: the secret zero-padded to SHA-256's 64-byte
  -- block, XORed with 0x36 and 0x5c.
  inner_pad   bytea not null check (octet_length(inner_pad) = 64),
  outer_pad   bytea not null check (octet_length(outer_pad) = 64),
  created_at  timestamptz not null default now()
);
revoke all on tributary.signing_keys from public;

do $$
declare
  -- gen_random_uuid() draws from pg_strong_random(): two give 244 random bits.
  secret bytea := decode(replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''), 'hex');
  block bytea := secret || decode(repeat('00', 32), 'hex');
  inner_pad bytea := block;
  outer_pad bytea := block;
begin
  for i in 0 .. 63 loop
    inner_pad := set_byte(inner_pad, i, get_byte(block, i) # 54);  -- 0x36
    outer_pad := set_byte(outer_pad, i, get_byte(block, i) # 92);  -- 0x5c
  end loop;
  insert into tributary.signing_keys (id, secret, inner_pad, outer_pad) values (1, secret, inner_pad, outer_pad);
end $$;

-- ---------------------------------------------------------------------------
-- Limits. A table, not GUCs: any session can SET a custom GUC, so a limit
-- read from one holds for no one. Each limit's range is what the stream table,
-- its indexes and every reader accept, so whatever append accepts is writable.

create table tributary.limits (
  name         text primary key,
  value        bigint not null,
  min_value    bigint not null,
  max_value    bigint not null,
  description  text not null,
  check (value between min_value and max_value)
);

insert into tributary.limits (name, value, min_value, max_value, description) values
  -- events_key_idx (stream, key, offset): a btree entry must stay under 2704
  -- bytes; 200-byte stream + 2048-byte key + offset + overhead does.
  ('max_key_bytes', 2048, 1, 2048, 'bytes of an event key (UTF-8)'),
  ('max_type_bytes', 256, 1, 4096, 'bytes of an event type (UTF-8)'),
  ('max_headers_bytes', 65536, 2, 1048576, 'bytes of an event''s headers as jsonb text'),
  ('max_data_bytes', 1048576, 1, 268435456, 'bytes of an event''s data as jsonb text'),
  ('max_depth', 100, 1, 1000, 'nesting depth of arrays and objects in data and headers');

-- A database that set the old GUC keeps its data limit.
do $$
declare
  old text := nullif(current_setting('tributary.max_data_bytes', true), '');
begin
  if old ~ '^\s*[0-9]{1,9}\s*$' and old::bigint between 1 and 268435456 then
    update tributary.limits set value = old::bigint where name = 'max_data_bytes';
  end if;
end $$;

-- Queue payloads (send) share the data limit.
create or replace function tributary.max_data_bytes() returns int
language sql stable set search_path = pg_catalog, pg_temp as $$
  select value::int from tributary.limits where name = 'max_data_bytes'
$$;

create function tributary.set_limit(name text, value bigint) returns void
language plpgsql as $$
declare
  l tributary.limits;
begin
  select * into l from tributary.limits where limits.name = set_limit.name;
  if not found then
    raise exception 'unknown limit %: the limits are %', quote_literal(name),
      (select string_agg(limits.name, ', ' order by limits.name) from tributary.limits)
      using errcode = '22023', constraint = 'tributary_limit';
  end if;
  if value is null or value < l.min_value or value > l.max_value then
    raise exception 'limit % must be between % and % (%), not %', name, l.min_value, l.max_value, l.description, coalesce(value::text, 'NULL')
      using errcode = '22023', constraint = 'tributary_limit';
  end if;
  update tributary.limits set value = set_limit.value where limits.name = set_limit.name;
end $$;

-- ---------------------------------------------------------------------------
-- Append, signed and bounded. SECURITY DEFINER: it reads the signing key,
-- which the caller cannot. search_path is pinned; every object is qualified.

-- Who may append to a stream. Permissive here; 0007 grants per stream.
create function tributary.authorize_append(stream text) returns void
language plpgsql stable as $$ begin end $$;

-- True when `value` nests arrays/objects deeper than `depth`. Nesting deeper
-- than `depth` needs more than `depth` '[' or '{' in its text, so a document
-- with fewer (every usual event) is not walked: one translate() instead of a
-- jsonpath parse and walk per append. Inlined into append (no SET clause).
create function tributary.nested_deeper_than(value jsonb, value_text text, depth int) returns boolean
language sql immutable as $$
  select pg_catalog.length(value_text) - pg_catalog.length(pg_catalog.translate(value_text, '[{', '')) > depth
     and pg_catalog.jsonb_path_exists(value, ('strict $.**{' || depth || '} ? (@.type() == "array" || @.type() == "object")')::pg_catalog.jsonpath)
$$;

create or replace function tributary.append(
  stream text, key text, type text, data jsonb, headers jsonb default '{}'
) returns uuid language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  id uuid := gen_random_uuid();
  partitions int;
  data_text text;
  headers_text text;
  payload text;
  ctx record;
begin
  perform tributary.validate_stream_name(stream);
  -- The limits and the newest signing key in one read: one scan of the five
  -- limit rows (not a lookup per limit: measured 3x slower per append) and
  -- one row of the keys. In the body, not in a function of its own: PL/pgSQL
  -- caches this plan, while a SQL function called per append would be planned
  -- again on every call.
  select max(l.value) filter (where l.name = 'max_key_bytes')::int as max_key_bytes,
         max(l.value) filter (where l.name = 'max_type_bytes')::int as max_type_bytes,
         max(l.value) filter (where l.name = 'max_headers_bytes')::int as max_headers_bytes,
         max(l.value) filter (where l.name = 'max_data_bytes')::int as max_data_bytes,
         max(l.value) filter (where l.name = 'max_depth')::int as max_depth,
         k.id as key_id, k.inner_pad, k.outer_pad
    into ctx
    from tributary.limits l
   cross join (select s.id, s.inner_pad, s.outer_pad from tributary.signing_keys s order by s.id desc limit 1) k
   group by k.id, k.inner_pad, k.outer_pad;
  if key is null or key = '' then
    raise exception 'event key must be a non-empty string (stream %)', stream
      using errcode = '22023', constraint = 'tributary_key';
  end if;
  if octet_length(key) > ctx.max_key_bytes then
    raise exception 'event key is % bytes, over the limit of % bytes (stream %)', octet_length(key), ctx.max_key_bytes, stream
      using errcode = '22023', constraint = 'tributary_key_size',
            hint = 'Use a shorter key (a hash of a long natural key keeps its partition stable).';
  end if;
  if type is null or type = '' then
    raise exception 'event type must be a non-empty string (stream %)', stream
      using errcode = '22023', constraint = 'tributary_type';
  end if;
  if octet_length(type) > ctx.max_type_bytes then
    raise exception 'event type is % bytes, over the limit of % bytes (stream %)', octet_length(type), ctx.max_type_bytes, stream
      using errcode = '22023', constraint = 'tributary_type_size',
            hint = 'An administrator can raise it: SELECT tributary.set_limit(''max_type_bytes'', <bytes>)';
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
  if octet_length(data_text) > ctx.max_data_bytes then
    raise exception 'event data is % bytes, over the limit of % bytes (stream %)',
      octet_length(data_text), ctx.max_data_bytes, stream
      using errcode = '22023', constraint = 'tributary_data_size',
            hint = 'An administrator can raise it: SELECT tributary.set_limit(''max_data_bytes'', <bytes>)';
  end if;
  if tributary.nested_deeper_than(data, data_text, ctx.max_depth) then
    raise exception 'event data nests arrays or objects more than % deep (stream %)', ctx.max_depth, stream
      using errcode = '22023', constraint = 'tributary_data_depth',
            hint = 'Flatten the document, or an administrator can raise it: SELECT tributary.set_limit(''max_depth'', <levels>)';
  end if;
  headers_text := headers::text;
  if octet_length(headers_text) > ctx.max_headers_bytes then
    raise exception 'event headers are % bytes, over the limit of % bytes (stream %)',
      octet_length(headers_text), ctx.max_headers_bytes, stream
      using errcode = '22023', constraint = 'tributary_headers_size',
            hint = 'An administrator can raise it: SELECT tributary.set_limit(''max_headers_bytes'', <bytes>)';
  end if;
  if tributary.nested_deeper_than(headers, headers_text, ctx.max_depth) then
    raise exception 'event headers nest arrays or objects more than % deep (stream %)', ctx.max_depth, stream
      using errcode = '22023', constraint = 'tributary_headers_depth';
  end if;
  perform tributary.authorize_append(stream);
  partitions := tributary.stream_partitions(stream);
  payload := json_build_array(stream, key, partitions, id, type)::text || E'\n' || headers_text || E'\n' || data_text;
  perform pg_logical_emit_message(
    true, 'tributary',
    'tributary-v1 ' || ctx.key_id || ' '
      || encode(sha256(ctx.outer_pad || sha256(ctx.inner_pad || convert_to(payload, pg_catalog.getdatabaseencoding()))), 'hex')
      || E'\n' || payload);
  return id;
end $$;

-- Set-based: one pass of unnest in array order (appends happen in scan
-- order, so offsets follow the arrays). 0001's loop read `datas[i]` out of
-- the whole array each time, O(n^2): ~80 us more per event at 100 events.
create or replace function tributary.append_many(
  streams text[], keys text[], types text[], datas jsonb[], headers jsonb[] default null
) returns uuid[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  n int := coalesce(cardinality(streams), 0);
begin
  if coalesce(cardinality(keys), 0) <> n or coalesce(cardinality(types), 0) <> n
     or coalesce(cardinality(datas), 0) <> n
     or (headers is not null and cardinality(headers) <> n) then
    raise exception 'append_many: streams, keys, types, datas (and headers when given) must have the same length'
      using errcode = '22023', constraint = 'tributary_batch_shape';
  end if;
  return array(
    select tributary.append(e.stream, e.key, e.type, e.data, coalesce(e.header, '{}'::jsonb))
      from unnest(streams, keys, types, datas, coalesce(headers, array_fill(null::jsonb, array[n])))
           with ordinality as e(stream, key, type, data, header, n)
     order by e.n);
end $$;

-- ---------------------------------------------------------------------------
-- Messages set aside by the relay: committed, but not an event (unsigned or
-- forged, malformed, or refused by the stream table). Written in the same
-- transaction as the batch they were read with, so each appears once.

create table tributary.rejected_messages (
  id            bigint generated always as identity primary key,
  slot_name     text not null,
  -- The message's own LSN and its transaction's commit LSN.
  lsn           pg_lsn not null,
  commit_lsn    pg_lsn not null,
  -- Which rule it broke: unsigned, bad_signature, unknown_key, malformed, write_failed.
  reason        text not null,
  detail        text not null,
  -- What could be read of the event, when the message parsed.
  stream        text,
  event_id      text,
  raw           bytea not null,
  rejected_at   timestamptz not null default now()
);
create index rejected_messages_at_idx on tributary.rejected_messages (rejected_at);

-- ---------------------------------------------------------------------------
-- The active relay's lease. The advisory lock says a relay's connection is
-- open; the lease says it is making progress. The active relay renews it
-- while it is healthy; a standby that finds it expired (by the database's
-- clock) terminates the holder's backends and its walsender and takes over.

create table tributary.relay_leases (
  slot_name    text primary key,
  relay_id     text not null,
  -- Backends of the holder: its lock connection and its writer connection
  -- (the walsender is found by slot), terminated by a standby taking over.
  lock_pid     int not null,
  writer_pid   int not null,
  expires_at   timestamptz not null,
  renewed_at   timestamptz not null default now()
);

-- ---------------------------------------------------------------------------
-- One slot feeds a database's streams. Two relays on two slots would each
-- number every event: duplicates. (A standby shares the active relay's slot.)

do $$
begin
  if (select count(*) from tributary.relay_checkpoints) > 1 then
    raise exception 'this database has % relay slots (%), and each numbers every event into the streams: events are duplicated',
      (select count(*) from tributary.relay_checkpoints),
      (select string_agg(slot_name, ', ') from tributary.relay_checkpoints)
      using hint = 'Keep the slot your relays use; drop the others (SELECT pg_drop_replication_slot(''<name>''); DELETE FROM tributary.relay_checkpoints WHERE slot_name = ''<name>'';), then migrate again.';
  end if;
end $$;
create unique index relay_checkpoints_one_slot on tributary.relay_checkpoints ((true));

-- From now on the relay writes an idle keepalive's position to the checkpoint
-- before acknowledging it, so a slot ahead of its checkpoint is a gap (a slot
-- re-created by hand). Before, idle acknowledgements could pass it: catch up.
update tributary.relay_checkpoints c
   set end_lsn = s.confirmed_flush_lsn
  from pg_replication_slots s
 where s.slot_name = c.slot_name and s.confirmed_flush_lsn > c.end_lsn;
