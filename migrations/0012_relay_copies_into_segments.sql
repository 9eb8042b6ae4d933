-- The relay copies each stream's rows straight into the table of the stream's
-- current segment (docs/ARCHITECTURE.md "Storage segments and retention"):
-- a row routed through tributary.events (LIST on stream, then RANGE on
-- segment) costs the server about a tenth more than the same row copied into
-- its segment, which only checks the row belongs there. A partition accessed
-- directly checks its own privileges, so tributary_relay gets INSERT on every
-- segment table, and on those created from now on. Nobody else gets anything
-- on them: readers go through tributary.events and its row-level security.

create or replace function tributary.create_stream_storage(stream text, partitions int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  stream_table text := tributary.stream_table_name(stream);
  first_segment text := tributary.segment_table_name(stream, 0);
begin
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) partition by range (segment)', stream_table);
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) with (fillfactor = 100)', first_segment);
  execute format('grant insert on tributary.%I to tributary_relay', first_segment);
  execute format('alter table tributary.%I attach partition tributary.%I for values from (0) to (1)', stream_table, first_segment);
  execute format('alter table tributary.events attach partition tributary.%I for values in (%L)', stream_table, stream);
  update tributary.streams s set events_table = stream_table where s.name = stream;
  insert into tributary.segments (stream, segment, table_name, first_offsets, started_at)
    values (stream, 0, first_segment, array_fill(0::bigint, array[partitions]), now());
end $$;
revoke all on function tributary.create_stream_storage(text, int) from public;

create or replace function tributary.create_segment(stream text, segment int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  stream_table text := (select s.events_table from tributary.streams s where s.name = stream);
  segment_table text := tributary.segment_table_name(stream, segment);
begin
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) with (fillfactor = 100)', segment_table);
  execute format('grant insert on tributary.%I to tributary_relay', segment_table);
  -- SHARE UPDATE EXCLUSIVE on the stream's table: the relay's COPY and readers go on.
  execute format('alter table tributary.%I attach partition tributary.%I for values from (%s) to (%s)', stream_table, segment_table, segment, segment + 1);
  insert into tributary.segments (stream, segment, table_name) values (stream, segment, segment_table);
end $$;
revoke all on function tributary.create_segment(text, int) from public;

do $$
declare
  t text;
begin
  for t in select g.table_name from tributary.segments g where to_regclass(format('tributary.%I', g.table_name)) is not null loop
    execute format('grant insert on tributary.%I to tributary_relay', t);
  end loop;
end $$;
