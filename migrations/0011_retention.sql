-- Retention per stream (docs/ARCHITECTURE.md "Storage segments and
-- retention", invariant 15): a stream's old events leave by whole segments.
--
--   set_retention(stream, max_age, max_bytes, max_events, protect_group)
--       what a stream keeps; all NULL: everything (the default)
--   roll_segments()    creates the next segment of each stream whose current
--       one is due (older or larger than its share of the retention); the
--       relay starts writing it with its next batch (it alone knows the
--       offsets the segment begins at)
--   expire_segments()  drops each stream's expired segments, oldest first,
--       never the one being written
--
-- The active relay runs both every few seconds (`--retention-interval`);
-- they are also plain functions for those who schedule them with pg_cron.

create table tributary.retention (
  stream          text primary key references tributary.streams (name),
  max_age         interval,
  max_bytes       bigint,
  max_events      bigint,
  protect_group   text,
  -- When the current segment is due to roll: a tenth of the retention, so
  -- that what is kept overshoots the limit by about a tenth at most.
  segment_age     interval not null,
  segment_bytes   bigint,
  segment_events  bigint,
  updated_at      timestamptz not null default now()
);

grant select on tributary.retention to tributary_admin, tributary_relay, tributary_reader;
grant insert, update, delete on tributary.retention to tributary_admin;

create function tributary.retention_error(message text, hint text) returns void
language plpgsql immutable as $$
begin
  raise exception '%', message using errcode = '22023', constraint = 'tributary_retention', hint = hint;
end $$;
revoke all on function tributary.retention_error(text, text) from public;

create function tributary.set_retention(
  stream text, max_age interval default null, max_bytes bigint default null, max_events bigint default null,
  protect_group text default null
) returns void language plpgsql as $$
begin
  if not exists (select 1 from tributary.streams s where s.name = stream) then
    perform tributary.retention_error(format('set_retention: no stream %s', coalesce(quote_literal(stream), 'NULL')),
      'Create it first: select tributary.create_stream(name, partitions).');
  end if;
  if max_age is not null and max_age <= interval '0' then
    perform tributary.retention_error(format('set_retention(%s): max_age %s is not a positive interval', stream, max_age),
      'Give how long events are kept, e.g. interval ''7 days''; NULL keeps them without an age limit.');
  end if;
  if max_bytes is not null and max_bytes < 1 then
    perform tributary.retention_error(format('set_retention(%s): max_bytes %s is not a positive byte count', stream, max_bytes),
      'Give the stream''s size limit in bytes (table and indexes), e.g. 10737418240 for 10 GiB; NULL: no size limit.');
  end if;
  if max_events is not null and max_events < 1 then
    perform tributary.retention_error(format('set_retention(%s): max_events %s is not a positive count', stream, max_events),
      'Give how many events the stream keeps (all partitions); NULL: no count limit.');
  end if;
  if protect_group is not null and max_age is null and max_bytes is null and max_events is null then
    perform tributary.retention_error(format('set_retention(%s): protect_group %s without a limit protects nothing', stream, quote_literal(protect_group)),
      'A stream without max_age, max_bytes or max_events keeps every event already.');
  end if;
  if max_age is null and max_bytes is null and max_events is null then
    delete from tributary.retention r where r.stream = set_retention.stream;
    return;
  end if;
  insert into tributary.retention as r (stream, max_age, max_bytes, max_events, protect_group, segment_age, segment_bytes, segment_events)
  values (stream, max_age, max_bytes, max_events, protect_group,
          least(coalesce(max_age / 10, interval '1 day'), interval '7 days'),
          case when max_bytes is not null then greatest(max_bytes / 10, 1) end,
          case when max_events is not null then greatest(max_events / 10, 1) end)
  on conflict on constraint retention_pkey do update
     set max_age = excluded.max_age, max_bytes = excluded.max_bytes, max_events = excluded.max_events,
         protect_group = excluded.protect_group, segment_age = excluded.segment_age,
         segment_bytes = excluded.segment_bytes, segment_events = excluded.segment_events, updated_at = now();
end $$;
revoke all on function tributary.set_retention(text, interval, bigint, bigint, text) from public;
grant execute on function tributary.set_retention(text, interval, bigint, bigint, text) to tributary_admin;

-- ---------------------------------------------------------------------------
-- Low watermarks: a partition's first retained offset, the first offset of
-- its stream's oldest segment (offsets below it are gone, never reused).

create view tributary.low_watermarks with (security_invoker = true) as
select s.stream, p.partition, coalesce(s.first_offsets[p.partition + 1], 0) as low_watermark
  from (select distinct on (g.stream) g.stream, g.first_offsets
          from tributary.segments g where g.first_offsets is not null
         order by g.stream, g.segment) s
  join tributary.streams st on st.name = s.stream
  cross join lateral generate_series(0, st.partitions - 1) as p(partition);

grant select on tributary.low_watermarks to tributary_admin, tributary_relay, tributary_reader;

-- ---------------------------------------------------------------------------
-- Rolling: the next segment is created ahead, empty (first_offsets NULL);
-- the relay starts it (stream-writer.ts), writing its first offsets.

create function tributary.create_segment(stream text, segment int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  stream_table text := (select s.events_table from tributary.streams s where s.name = stream);
  segment_table text := tributary.segment_table_name(stream, segment);
begin
  execute format('create table tributary.%I (like tributary.events including defaults including constraints) with (fillfactor = 100)', segment_table);
  -- SHARE UPDATE EXCLUSIVE on the stream's table: the relay's COPY and readers go on.
  execute format('alter table tributary.%I attach partition tributary.%I for values from (%s) to (%s)', stream_table, segment_table, segment, segment + 1);
  insert into tributary.segments (stream, segment, table_name) values (stream, segment, segment_table);
end $$;
revoke all on function tributary.create_segment(text, int) from public;

create function tributary.roll_segments() returns table (stream text, segment int)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  r record;
begin
  for r in
    select c.stream, c.segment, c.table_name, c.started_at, c.first_offsets, t.segment_age, t.segment_bytes, t.segment_events
      from tributary.retention t
      join lateral (select g.* from tributary.segments g
                     where g.stream = t.stream and g.first_offsets is not null
                     order by g.segment desc limit 1) c on true
     where not exists (select 1 from tributary.segments n where n.stream = t.stream and n.first_offsets is null)
     order by c.stream
  loop
    if r.started_at <= now() - r.segment_age
       or (r.segment_events is not null and
           (select coalesce(sum(po.next_offset), 0) from tributary.partition_offsets po where po.stream = r.stream)
             - (select coalesce(sum(f), 0) from unnest(r.first_offsets) f) >= r.segment_events)
       or (r.segment_bytes is not null and pg_catalog.pg_total_relation_size(format('tributary.%I', r.table_name)::regclass) >= r.segment_bytes)
    then
      perform tributary.create_segment(r.stream, r.segment + 1);
      stream := r.stream;
      segment := r.segment + 1;
      return next;
    end if;
  end loop;
end $$;
revoke all on function tributary.roll_segments() from public;

-- ---------------------------------------------------------------------------
-- Expiry. A segment s is expired when the stream's limits no longer need it:
--   max_age:    the next segment began more than max_age ago. Every event of
--               s was committed before the relay began the next one (it
--               writes after the commit, batch after batch), so none of them
--               is younger than max_age.
--   max_events / max_bytes: what the stream keeps without s is still at
--               least the limit (Kafka's rule: the log never keeps less).
-- and, with protect_group, the group has committed past every partition's
-- end of s. The segment being written is never expired; segments go oldest
-- first, so a partition's low watermark only rises. The drops of a run
-- and their catalog rows commit together (a kill -9 leaves all or none of
-- them), each with a short lock timeout (DROP takes an ACCESS EXCLUSIVE lock
-- on the stream's table): a drop that would wait longer is left, with the
-- stream's later segments, for the next run.

create function tributary.expire_segments(lock_timeout_ms int default 500)
returns table (stream text, segment int, events bigint, bytes bigint)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  t record;
  s record;
  kept_events bigint;
  kept_bytes bigint;
  segment_events bigint;
  segment_bytes bigint;
begin
  perform pg_catalog.set_config('lock_timeout', lock_timeout_ms || 'ms', true);
  for t in select * from tributary.retention order by 1 loop
    select coalesce(sum(po.next_offset), 0) into kept_events from tributary.partition_offsets po where po.stream = t.stream;
    kept_events := kept_events - coalesce((select sum(f) from tributary.segments g, unnest(g.first_offsets) f
                                            where g.stream = t.stream and g.segment = (select min(m.segment) from tributary.segments m
                                                                                        where m.stream = t.stream and m.first_offsets is not null)), 0);
    select coalesce(sum(pg_catalog.pg_total_relation_size(format('tributary.%I', g.table_name)::regclass)), 0) into kept_bytes
      from tributary.segments g where g.stream = t.stream;
    for s in
      select g.segment, g.table_name, g.first_offsets, n.first_offsets as next_first, n.started_at as next_started
        from tributary.segments g
        join lateral (select m.* from tributary.segments m
                       where m.stream = g.stream and m.segment > g.segment and m.first_offsets is not null
                       order by m.segment limit 1) n on true
       where g.stream = t.stream and g.first_offsets is not null
       order by g.segment
    loop
      segment_events := (select coalesce(sum(f), 0) from unnest(s.next_first) f) - (select coalesce(sum(f), 0) from unnest(s.first_offsets) f);
      segment_bytes := pg_catalog.pg_total_relation_size(format('tributary.%I', s.table_name)::regclass);
      exit when not (
        (t.max_age is not null and s.next_started <= now() - t.max_age)
        or (t.max_events is not null and kept_events - segment_events >= t.max_events)
        or (t.max_bytes is not null and kept_bytes - segment_bytes >= t.max_bytes));
      exit when t.protect_group is not null and exists (
        select 1 from generate_series(1, cardinality(s.next_first)) i
          left join tributary.group_offsets o
            on o.group_name = t.protect_group and o.stream = t.stream and o.partition = i - 1
         where coalesce(o.next_offset, 0) < s.next_first[i]);
      begin
        execute format('drop table tributary.%I', s.table_name);
      exception when lock_not_available then
        exit; -- readers or the relay hold the stream's table: the next run drops it
      end;
      delete from tributary.segments g where g.stream = t.stream and g.segment = s.segment;
      kept_events := kept_events - segment_events;
      kept_bytes := kept_bytes - segment_bytes;
      stream := t.stream;
      segment := s.segment;
      events := segment_events;
      bytes := segment_bytes;
      return next;
    end loop;
  end loop;
end $$;
revoke all on function tributary.expire_segments(int) from public;
grant execute on function tributary.roll_segments(), tributary.expire_segments(int) to tributary_relay, tributary_admin;

-- ---------------------------------------------------------------------------
-- Reading one partition from an offset: the segments that can hold the next
-- `count` events from `from_offset`, for the read's bound on `segment` (so
-- its index scans, merged in offset order, span one or two segments however
-- many the stream keeps). lo: the last segment whose first offset of the
-- partition is at or before from_offset, else the oldest (from_offset is
-- below the low watermark); hi: the segment before the first later one that
-- begins past the `count` events. Segments created ahead and not begun
-- (first_offsets NULL) hold nothing yet. An inlined SQL function: its
-- subqueries become parameters the scan's run-time partition pruning reads.
create function tributary.segment_bounds(stream text, partition int, from_offset bigint, count int)
returns table (lo int, hi int)
language sql stable as $$
  select b.lo,
         coalesce((select min(g.segment) - 1 from tributary.segments g
                    where g.stream = segment_bounds.stream and g.segment > b.lo and g.first_offsets is not null
                      and g.first_offsets[segment_bounds.partition + 1] > segment_bounds.from_offset + segment_bounds.count - 1),
                  2147483647) as hi
    from (select coalesce((select max(g.segment) from tributary.segments g
                            where g.stream = segment_bounds.stream and g.first_offsets is not null
                              and g.first_offsets[segment_bounds.partition + 1] <= segment_bounds.from_offset),
                          (select min(g.segment) from tributary.segments g
                            where g.stream = segment_bounds.stream and g.first_offsets is not null),
                          0) as lo) b
$$;
revoke all on function tributary.segment_bounds(text, int, bigint, int) from public;
grant execute on function tributary.segment_bounds(text, int, bigint, int) to tributary_reader, tributary_admin;

-- ---------------------------------------------------------------------------
-- Seeking by time: the first offset of a partition committed at or after
-- `at`, NULL when there is none yet. Every event of a segment was committed
-- before its successor began (see expiry above), so the scan starts at the
-- first segment whose successor began at or after `at` (or the last one),
-- never at the partition's first offset when the stream has several.
create function tributary.first_offset_at(stream text, partition int, at timestamptz) returns bigint
language sql stable as $$
  select e."offset" from tributary.events e
   where e.stream = first_offset_at.stream and e.partition = first_offset_at.partition and e.committed_at >= first_offset_at.at
     and e.segment >= coalesce(
           (select min(g.segment) from tributary.segments g
             where g.stream = first_offset_at.stream and g.first_offsets is not null
               and not exists (select 1 from tributary.segments n
                                where n.stream = g.stream and n.segment > g.segment and n.first_offsets is not null
                                  and n.started_at < first_offset_at.at)), 0)
   order by e."offset" limit 1
$$;
revoke all on function tributary.first_offset_at(text, int, timestamptz) from public;
grant execute on function tributary.first_offset_at(text, int, timestamptz) to tributary_reader, tributary_admin;

-- ---------------------------------------------------------------------------
-- Reading several partitions of one stream from their positions (what a
-- consumer group member fetches): up to `count` events of each, in offset
-- order per partition. The segment bounds are computed first and written
-- into the query as constants, so PostgreSQL prunes every other segment
-- while planning: it neither locks nor sets up their scans, and the cost of
-- a fetch does not grow with the number of segments a stream keeps (bounds
-- from the same query would prune only at run time, after every segment's
-- scan was set up). Stable: the bounds and the rows are read in one
-- snapshot. Security invoker: the caller's row-level security applies.
create function tributary.read_partitions(stream text, partitions int[], from_offsets bigint[], count int)
returns setof tributary.events
language plpgsql stable as $$
declare
  legs text[] := '{}';
  b record;
begin
  for i in 1 .. coalesce(cardinality(partitions), 0) loop
    select * into b from tributary.segment_bounds(stream, partitions[i], from_offsets[i], count);
    legs := legs || format(
      '(select * from tributary.events e where e.stream = %L and e.partition = %s and e.segment between %s and %s and e."offset" >= %s order by e."offset" limit %s)',
      stream, partitions[i], b.lo, b.hi, from_offsets[i], count);
  end loop;
  if cardinality(legs) > 0 then
    return query execute array_to_string(legs, ' union all ');
  end if;
end $$;
revoke all on function tributary.read_partitions(text, int[], bigint[], int) from public;
grant execute on function tributary.read_partitions(text, int[], bigint[], int) to tributary_reader, tributary_admin;
