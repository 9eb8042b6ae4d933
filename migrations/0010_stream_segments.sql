-- The stream table becomes natively partitioned, so that old events can
-- leave by whole storage segments (docs/ARCHITECTURE.md "Storage segments and
-- retention", invariant 15):
--
--   tributary.events                      PARTITION BY LIST (stream)
--     tributary."events.<stream>.<hash>"  one per stream, PARTITION BY RANGE (segment)
--       tributary."events.<hash>.<n>"     its segments: n = 0, 1, 2, ...
--
-- `segment` is written by the relay with every row; offsets are what they
-- were (a partition's offsets rise with its segments). The primary key is
-- (stream, partition, "offset", segment): a partitioned table's unique index
-- must hold its partition keys, and with "offset" before segment each
-- segment's index is in offset order, so reading one partition from an offset
-- stays an index range scan in offset order (merged across segments when a
-- read spans several). Offsets stay unique through the relay's checkpoint
-- compare-and-set (invariant 4), as before.
--
-- Upgrade: the rows of the old table are copied into the new layout with
-- their offsets (segment 0 of each stream); consumer group offsets, the
-- partitions' next offsets and the checkpoint are untouched. Appends go on
-- during the upgrade (they write the WAL, not this table); the relay and
-- readers wait for it. README "Upgrading" has the figures per million events.

-- ---------------------------------------------------------------------------
-- The catalog of segments.
--   first_offsets: the next offset of each of the stream's partitions
--     (first_offsets[p + 1] for partition p) when the relay began writing the
--     segment; the segment holds a partition's offsets from there to the next
--     segment's first offset. NULL for a segment created ahead, not written yet.
--   started_at: when the relay began writing it (segment 0: the stream's creation).
create table tributary.segments (
  stream         text not null,
  segment        int not null check (segment >= 0),
  table_name     text not null unique,
  first_offsets  bigint[],
  started_at     timestamptz,
  created_at     timestamptz not null default now(),
  primary key (stream, segment)
);

alter table tributary.streams add column events_table text unique;

-- Identifiers are at most 63 bytes: a stream name is up to 200 characters, so
-- the table names carry a prefix of it (for people) and a hash (for uniqueness).
create function tributary.stream_table_name(stream text) returns text
language sql immutable as $$
  select 'events.' || left(stream, 40) || '.' || left(md5(stream), 12)
$$;

create function tributary.segment_table_name(stream text, segment int) returns text
language sql immutable as $$
  select 'events.' || left(md5(stream), 12) || '.' || segment
$$;
revoke all on function tributary.stream_table_name(text), tributary.segment_table_name(text, int) from public;

-- ---------------------------------------------------------------------------
-- The new stream table.

alter table tributary.events rename to events_before_segments;
alter index tributary.events_pkey rename to events_before_segments_pkey;
alter index tributary.events_key_idx rename to events_before_segments_key_idx;

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
  segment       int not null,
  primary key (stream, partition, "offset", segment)
) partition by list (stream);

create index events_key_idx on tributary.events (stream, key, "offset");

create trigger events_append_only
  before update or delete or truncate on tributary.events
  for each statement execute function tributary.forbid_event_changes();

-- Privileges and row-level security as migration 0007 set them on the old table.
grant select on tributary.events to tributary_admin, tributary_reader;
grant select, insert on tributary.events to tributary_relay;
alter table tributary.events enable row level security;
create policy admin_all on tributary.events to tributary_admin using (true);
create policy readers on tributary.events for select to tributary_reader
  using (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);

grant select on tributary.segments to tributary_admin, tributary_relay, tributary_reader;
grant insert, update on tributary.segments to tributary_relay;

-- ---------------------------------------------------------------------------
-- A stream's table and its first segment, created with the stream (the
-- trigger below): CREATE TABLE + ATTACH PARTITION, which takes a SHARE UPDATE
-- EXCLUSIVE lock on the parent, so neither readers nor the relay's COPY wait
-- (CREATE TABLE ... PARTITION OF would take an ACCESS EXCLUSIVE one). Two
-- transactions creating streams at once take turns until the first commits.
-- Security definer: whoever may create a stream gets its storage, owned by
-- Tributary's owner. INCLUDING CONSTRAINTS: a CHECK an operator added to
-- tributary.events must be on every partition attached to it.

create function tributary.create_stream_storage(stream text, partitions int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  stream_table text := tributary.stream_table_name(stream);
  first_segment text := tributary.segment_table_name(stream, 0);
begin
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) partition by range (segment)', stream_table);
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) with (fillfactor = 100)', first_segment);
  execute format('alter table tributary.%I attach partition tributary.%I for values from (0) to (1)', stream_table, first_segment);
  execute format('alter table tributary.events attach partition tributary.%I for values in (%L)', stream_table, stream);
  update tributary.streams s set events_table = stream_table where s.name = stream;
  insert into tributary.segments (stream, segment, table_name, first_offsets, started_at)
    values (stream, 0, first_segment, array_fill(0::bigint, array[partitions]), now());
end $$;
revoke all on function tributary.create_stream_storage(text, int) from public;

create function tributary.stream_created() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform tributary.create_stream_storage(new.name, new.partitions);
  return null;
end $$;
revoke all on function tributary.stream_created() from public;

create trigger streams_storage after insert on tributary.streams
  for each row execute function tributary.stream_created();

-- ---------------------------------------------------------------------------
-- The upgrade: every existing stream gets its table, and the old rows move
-- into segment 0 with their offsets. Every event's stream has a row in
-- tributary.streams (append and capture create it first); a row without one
-- would make the INSERT fail with "no partition of relation events found".

select tributary.create_stream_storage(s.name, s.partitions) from tributary.streams s order by s.name;

insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
select stream, partition, "offset", id, key, type, data, headers, committed_at, 0
  from tributary.events_before_segments;

drop table tributary.events_before_segments;
