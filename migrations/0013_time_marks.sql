-- Seeking by time without scanning a partition from its first event
-- (docs/ARCHITECTURE.md "Storage segments and retention"): time marks, a
-- sparse index of each partition's commit times, one row per block of
-- 10,000 offsets holding the latest commit time in the block.
--
--   mark_times()     marks the blocks completed since the last run (the
--       active relay runs it with retention; also a plain function for
--       pg_cron), and forgets blocks retention dropped
--   first_offset_at(stream, partition, at) starts its scan at the first
--       block whose latest commit time is at or after `at`: no event before
--       it can be, so the scan reads at most one block and the segment
--       start, however many events the partition holds
--
-- The marks are read from the events themselves, after they are written:
-- nothing is added to the relay's write, and the latest time of a block is
-- exact whatever the clock did (commit times need not rise with offsets).
-- Blocks not yet marked are scanned as before. Marks are contiguous from
-- the block holding the low watermark up: the first run starts there, each
-- next one after the last mark.

create function tributary.time_mark_events() returns int
language sql immutable as $$ select 10000 $$;
revoke all on function tributary.time_mark_events() from public;
grant execute on function tributary.time_mark_events() to tributary_admin, tributary_reader;

create table tributary.time_marks (
  stream             text not null references tributary.streams (name),
  partition          int not null,
  -- The block's first offset, a multiple of time_mark_events().
  "offset"           bigint not null,
  last_committed_at  timestamptz not null,
  primary key (stream, partition, "offset")
);

grant select on tributary.time_marks to tributary_admin, tributary_reader;
alter table tributary.time_marks enable row level security;
create policy admin_all on tributary.time_marks to tributary_admin using (true);
create policy readers on tributary.time_marks for select to tributary_reader
  using (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);

-- Marks at most `max_blocks` blocks per run (a million events: the rest next
-- run, so a backlog marked after the upgrade never makes one run long); returns how many.
create function tributary.mark_times(max_blocks int default 100) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  size constant int := tributary.time_mark_events();
  r record;
  b record;
  block bigint;
  latest timestamptz;
  marked int := 0;
begin
  -- Blocks wholly below the low watermark hold nothing any more.
  delete from tributary.time_marks m using tributary.low_watermarks w
   where m.stream = w.stream and m.partition = w.partition and m."offset" + size <= w.low_watermark;
  for r in
    select po.stream, po.partition, po.next_offset,
           coalesce((select max(m."offset") + size from tributary.time_marks m where m.stream = po.stream and m.partition = po.partition),
                    (select w.low_watermark / size * size from tributary.low_watermarks w where w.stream = po.stream and w.partition = po.partition),
                    0) as next_block
      from tributary.partition_offsets po
     order by po.stream, po.partition
  loop
    block := r.next_block;
    while block + size <= r.next_offset and marked < max_blocks loop
      select * into b from tributary.segment_bounds(r.stream, r.partition, block, size);
      select max(e.committed_at) into latest from tributary.events e
       where e.stream = r.stream and e.partition = r.partition and e.segment between b.lo and b.hi
         and e."offset" >= block and e."offset" < block + size;
      exit when latest is null; -- dropped by retention meanwhile: the next run starts above the watermark
      insert into tributary.time_marks (stream, partition, "offset", last_committed_at)
        values (r.stream, r.partition, block, latest) on conflict do nothing;
      marked := marked + 1;
      block := block + size;
    end loop;
  end loop;
  return marked;
end $$;
revoke all on function tributary.mark_times(int) from public;
grant execute on function tributary.mark_times(int) to tributary_relay, tributary_admin;

-- Seeking by time: the first offset of a partition committed at or after
-- `at`, NULL when there is none yet. The scan starts at the later of two
-- bounds: the first segment whose successor began at or after `at` (every
-- event of a segment was committed before its successor began, migration
-- 0011) and the first block whose latest commit time is at or after `at`
-- (or the first block not marked yet). Security invoker: the caller's
-- row-level security applies.
create or replace function tributary.first_offset_at(stream text, partition int, at timestamptz) returns bigint
language plpgsql stable as $$
declare
  from_offset bigint;
  from_segment int;
  first bigint;
begin
  from_offset := coalesce(
    (select min(m."offset") from tributary.time_marks m
      where m.stream = first_offset_at.stream and m.partition = first_offset_at.partition and m.last_committed_at >= at),
    (select max(m."offset") + tributary.time_mark_events() from tributary.time_marks m
      where m.stream = first_offset_at.stream and m.partition = first_offset_at.partition),
    0);
  from_segment := greatest(
    (select b.lo from tributary.segment_bounds(stream, partition, from_offset, 1) b),
    coalesce((select min(g.segment) from tributary.segments g
               where g.stream = first_offset_at.stream and g.first_offsets is not null
                 and not exists (select 1 from tributary.segments n
                                  where n.stream = g.stream and n.segment > g.segment and n.first_offsets is not null
                                    and n.started_at < first_offset_at.at)), 0));
  select e."offset" into first from tributary.events e
   where e.stream = first_offset_at.stream and e.partition = first_offset_at.partition
     and e.segment >= from_segment and e."offset" >= from_offset and e.committed_at >= at
   order by e."offset" limit 1;
  return first;
end $$;
revoke all on function tributary.first_offset_at(text, int, timestamptz) from public;
grant execute on function tributary.first_offset_at(text, int, timestamptz) to tributary_reader, tributary_admin;
