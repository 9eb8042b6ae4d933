-- Table capture (CDC): the row changes of users' own tables as stream
-- events (docs/ARCHITECTURE.md invariant 14, "Table capture").
--
--   tributary.capture(source regclass, options jsonb default '{}') returns text
--   tributary.uncapture(source regclass) returns boolean
--   tributary.backfill(source regclass, filter text default null) returns void
--   tributary.captures: one row per table (its latest capture), with its state
--
-- How a capture starts, exactly once in commit order. capture() inserts a row
-- into tributary.table_captures, adds the table to the publication pgoutput
-- reads, and emits a transactional logical message with the prefix
-- 'tributary.cdc' that names the capture and its token. The relay reads that
-- message in the capture's own transaction: the capture covers the changes of
-- transactions committed after it, and the relay writes that commit LSN
-- (start_lsn) in the same database transaction as the batch that carries it,
-- so a relay that restarts from an earlier checkpoint knows where each
-- capture begins. uncapture() ends a capture the same way (stop_lsn). Any
-- role may emit a message with any prefix (invariant 12): the relay acts on
-- a 'tributary.cdc' message only when its token matches the capture's row,
-- which only the admin and the relay can read.
--
-- Options of capture():
--   stream      the stream (default '<schema>.<table>'); created when missing
--   partitions  the partition count of a new stream (default 8)
--   snapshot    'initial' (default: the existing rows first, as 'r' events)
--               or 'none'
--   columns     an include list of column names (default: every column); the
--               key columns are always carried
-- Calling capture() again with the same options is a no-op; with other
-- options it is an error (SQLSTATE 22023, constraint tributary_capture):
-- uncapture() first, then capture() with the new options.
--
-- The key is the primary key, else the replica identity index. A table with
-- neither, or with REPLICA IDENTITY NOTHING, is refused with how to fix it:
-- its updates and deletes would carry no key. Tributary's own tables can
-- never be captured (the stream table would feed itself).
--
-- Privileges. capture() and uncapture() run with the caller's rights: adding
-- a table to a publication needs its owner and the publication's owner (the
-- role that ran migrate), so the caller is a member of both (often that same
-- role, or a superuser), and tributary_admin. capture() grants SELECT on the
-- table to tributary_relay: the relay reads snapshots. backfill() is an
-- admin verb; its filter is checked by running it as the caller (a filter
-- that reads what the caller may not read fails here, not in the relay).

create table tributary.table_captures (
  id                      bigint generated always as identity primary key,
  relid                   oid not null,
  schema_name             name not null,
  table_name              name not null,
  stream                  text not null references tributary.streams (name),
  key_columns             text[] not null,
  columns                 text[],
  snapshot                text not null check (snapshot in ('initial', 'none')),
  token                   uuid not null default gen_random_uuid(),
  started_at              timestamptz not null default now(),
  -- Written by the relay, in the batch that carries the capture's transaction.
  start_lsn               pg_lsn,
  stopped_at              timestamptz,
  stop_reason             text,
  stop_lsn                pg_lsn,
  last_change_at          timestamptz,
  -- Snapshots: 'pending' (requested), 'running', 'done', or null (never asked).
  snapshot_state          text check (snapshot_state in ('pending', 'running', 'done')),
  snapshot_filter         text,
  -- The key (as texts) of the last row snapshotted; the next chunk starts after it.
  snapshot_cursor         text[],
  snapshot_rows_done      bigint not null default 0,
  snapshot_rows_estimated bigint,
  snapshot_requested_at   timestamptz,
  snapshot_finished_at    timestamptz
);

create unique index table_captures_live on tributary.table_captures (relid) where stopped_at is null;

create function tributary.capture_error(message text, hint text default null) returns void
language plpgsql as $$
begin
  raise exception '%', message using errcode = '22023', constraint = 'tributary_capture', hint = coalesce(hint, '');
end $$;

-- The table's key columns in key order: the primary key, else the replica
-- identity index. Null when it has neither.
create function tributary.capture_key(source regclass) returns text[]
language sql stable as $$
  select array_agg(a.attname::text order by k.ord)
    from (select i.indrelid, i.indkey
            from pg_catalog.pg_index i
           where i.indrelid = source and (i.indisprimary or i.indisreplident)
           order by i.indisprimary desc
           limit 1) ix
    cross join lateral unnest(ix.indkey) with ordinality as k(attnum, ord)
    join pg_catalog.pg_attribute a on a.attrelid = ix.indrelid and a.attnum = k.attnum
$$;

create function tributary.capture(source regclass, options jsonb default '{}')
returns text language plpgsql as $$
declare
  rel record;
  opt text;
  stream_name text;
  partitions int;
  snapshot_mode text;
  include text[];
  key text[];
  live tributary.table_captures;
  created tributary.table_captures;
begin
  if source is null then
    perform tributary.capture_error('capture(): source is NULL: pass a table, e.g. tributary.capture(''public.orders'')');
  end if;
  if options is null or jsonb_typeof(options) <> 'object' then
    perform tributary.capture_error(format('capture(%s): options must be a JSON object, not %s', source, coalesce(options::text, 'NULL')));
  end if;
  for opt in select jsonb_object_keys(options) loop
    if opt <> all (array['stream', 'partitions', 'snapshot', 'columns']) then
      perform tributary.capture_error(format('capture(%s): unknown option %s', source, quote_literal(opt)),
        'The options are stream, partitions, snapshot and columns.');
    end if;
  end loop;

  select c.oid, c.relname, n.nspname, c.relkind, c.relispartition, c.relreplident into rel
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = source;
  if rel.nspname = 'tributary' then
    perform tributary.capture_error(format('capture(%s): Tributary''s own tables cannot be captured', source),
      'The stream table would feed itself; read tributary.events with a consumer group or a reader instead.');
  end if;
  if rel.relkind not in ('r', 'p') then
    perform tributary.capture_error(format('capture(%s): %s is a %s, not a table: only tables (plain or partitioned) can be captured', source, source,
      case rel.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'f' then 'foreign table' when 'S' then 'sequence'
                       when 'i' then 'index' when 'I' then 'partitioned index' when 'c' then 'composite type' else 'relation of kind ' || rel.relkind::text end),
      'Capture the table the view reads from.');
  end if;
  if rel.relispartition then
    perform tributary.capture_error(format('capture(%s): %s is a partition of %s: capture the partitioned table, whose changes include every partition''s',
      source, source, (select pg_catalog.pg_partition_root(source))::regclass));
  end if;

  key := tributary.capture_key(source);
  if key is null then
    perform tributary.capture_error(format('capture(%s): %s has no primary key and no replica identity index, so its changes would carry no key', source, source),
      format('Add a primary key (ALTER TABLE %s ADD PRIMARY KEY (...)), or point the replica identity at a unique index on NOT NULL columns (ALTER TABLE %s REPLICA IDENTITY USING INDEX ...).', source, source));
  end if;
  if rel.relreplident = 'n' then
    perform tributary.capture_error(format('capture(%s): %s has REPLICA IDENTITY NOTHING: its updates and deletes carry no key', source, source),
      format('ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL, to have the whole old row in "before").', source));
  end if;

  stream_name := coalesce(options->>'stream', rel.nspname || '.' || rel.relname);
  if options ? 'stream' and jsonb_typeof(options->'stream') <> 'string' then
    perform tributary.capture_error(format('capture(%s): option stream must be a string, not %s', source, options->'stream'));
  end if;
  if stream_name !~ '^[A-Za-z0-9._-]{1,200}$' then
    perform tributary.capture_error(format('capture(%s): the stream name %s is invalid: a stream name is 1 to 200 characters of A-Z a-z 0-9 . _ -', source, quote_literal(stream_name)),
      case when options ? 'stream' then 'Pass another name in the stream option.'
           else format('The default stream name is ''<schema>.<table>''; pass one in the options: tributary.capture(%L, ''{"stream": "..."}'')', source::text) end);
  end if;
  if options ? 'partitions' and (jsonb_typeof(options->'partitions') <> 'number' or (options->>'partitions') !~ '^[0-9]{1,5}$') then
    perform tributary.capture_error(format('capture(%s): option partitions must be a whole number from 1 to 10000, not %s', source, options->'partitions'));
  end if;
  snapshot_mode := coalesce(options->>'snapshot', 'initial');
  if snapshot_mode not in ('initial', 'none') or (options ? 'snapshot' and jsonb_typeof(options->'snapshot') <> 'string') then
    perform tributary.capture_error(format('capture(%s): option snapshot must be "initial" (the existing rows first) or "none", not %s', source, options->'snapshot'));
  end if;
  if options ? 'columns' then
    if jsonb_typeof(options->'columns') <> 'array' or exists (select 1 from jsonb_array_elements(options->'columns') e where jsonb_typeof(e) <> 'string')
       or jsonb_array_length(options->'columns') = 0 then
      perform tributary.capture_error(format('capture(%s): option columns must be a non-empty array of column names, not %s', source, options->'columns'));
    end if;
    include := array(select jsonb_array_elements_text(options->'columns'));
    select string_agg(quote_ident(c), ', ') into opt
      from jsonb_array_elements_text(options->'columns') c
     where not exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = source and a.attname = c and a.attnum > 0 and not a.attisdropped);
    if opt is not null then
      perform tributary.capture_error(format('capture(%s): %s has no column %s', source, source, opt));
    end if;
    -- Key columns are always carried; the list is kept in table order.
    select array_agg(a.attname::text order by a.attnum) into include
      from pg_catalog.pg_attribute a
     where a.attrelid = source and a.attnum > 0 and not a.attisdropped
       and (a.attname::text = any (include) or a.attname::text = any (key));
  end if;

  select * into live from tributary.table_captures t where t.relid = source and t.stopped_at is null;
  if found then
    if live.stream = stream_name and live.snapshot = snapshot_mode and live.columns is not distinct from include then
      if options ? 'partitions' then perform tributary.create_stream(stream_name, (options->>'partitions')::int); end if; -- raises on another count
      return live.stream; -- the same capture: nothing to do
    end if;
    perform tributary.capture_error(
      format('capture(%s): %s is already captured into stream %s with other options (snapshot %s, columns %s)', source, source,
             live.stream, live.snapshot, coalesce(array_to_string(live.columns, ', '), 'all')),
      format('To change them: SELECT tributary.uncapture(%L); then capture() again with the new options.', source::text));
  end if;

  partitions := coalesce((options->>'partitions')::int, 8);
  if exists (select 1 from tributary.streams s where s.name = stream_name) then
    if options ? 'partitions' then perform tributary.create_stream(stream_name, partitions); end if; -- raises on another count
  else
    perform tributary.create_stream(stream_name, partitions);
  end if;

  begin
    if not exists (select 1 from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                    where p.pubname = 'tributary_relay' and pr.prrelid = source) then
      execute format('alter publication tributary_relay add table %s', source);
    end if;
    execute format('grant select on table %s to tributary_relay', source);
  exception when insufficient_privilege then
    perform tributary.capture_error(format('capture(%s): role %s may not add %s to the relay''s publication: %s', source, current_user, source, sqlerrm),
      format('Call capture() as a role that owns %s and is a member of %s, which owns the publication tributary_relay (the role that ran migrate, or a superuser).',
             source, (select pg_catalog.pg_get_userbyid(p.pubowner) from pg_catalog.pg_publication p where p.pubname = 'tributary_relay')));
  end;

  insert into tributary.table_captures (relid, schema_name, table_name, stream, key_columns, columns, snapshot,
                                        snapshot_state, snapshot_rows_estimated, snapshot_requested_at)
  values (source, rel.nspname, rel.relname, stream_name, key, include, snapshot_mode,
          case when snapshot_mode = 'initial' then 'pending' end,
          case when snapshot_mode = 'initial' then tributary.capture_estimate(source) end,
          case when snapshot_mode = 'initial' then now() end)
  returning * into created;
  perform pg_catalog.pg_logical_emit_message(true, 'tributary.cdc',
    json_build_object('op', 'capture', 'id', created.id, 'token', created.token)::text);
  return stream_name;
end $$;

-- Rows of a table (all its partitions) as the planner last counted them;
-- null when a table was never counted (reltuples -1: not vacuumed or
-- analyzed since it was created).
create function tributary.capture_estimate(source regclass) returns bigint
language sql stable as $$
  select case when bool_or(c.reltuples < 0) then null else sum(c.reltuples)::bigint end
    from pg_catalog.pg_class c
   where c.relkind = 'r'
     and (c.oid = source or c.oid in (select relid from pg_catalog.pg_partition_tree(source) where isleaf))
$$;

create function tributary.uncapture(source regclass) returns boolean
language plpgsql as $$
declare
  live tributary.table_captures;
begin
  select * into live from tributary.table_captures t where t.relid = source and t.stopped_at is null for update;
  if not found then
    return false;
  end if;
  update tributary.table_captures set stopped_at = now(), stop_reason = 'uncaptured' where id = live.id;
  begin
    if exists (select 1 from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                where p.pubname = 'tributary_relay' and pr.prrelid = source) then
      execute format('alter publication tributary_relay drop table %s', source);
    end if;
  exception when insufficient_privilege then
    perform tributary.capture_error(format('uncapture(%s): role %s may not drop %s from the relay''s publication: %s', source, current_user, source, sqlerrm),
      format('Call uncapture() as a role that owns %s and is a member of the owner of the publication tributary_relay.', source));
  end;
  perform pg_catalog.pg_logical_emit_message(true, 'tributary.cdc',
    json_build_object('op', 'uncapture', 'id', live.id, 'token', live.token)::text);
  return true;
end $$;

create function tributary.backfill(source regclass, filter text default null) returns void
language plpgsql as $$
declare
  live tributary.table_captures;
  called text;
begin
  select * into live from tributary.table_captures t where t.relid = source and t.stopped_at is null for update;
  if not found then
    perform tributary.capture_error(format('backfill(%s): %s is not captured', source, source),
      format('Capture it first: SELECT tributary.capture(%L);', source::text));
  end if;
  if filter is not null then
    -- The relay evaluates the filter with its own rights: a function or
    -- operator a user defined would run as the relay (which reads the
    -- signing keys and bypasses row-level security). A temporary view
    -- records what the condition calls; only PostgreSQL's own may appear.
    begin
      execute format('create temporary view tributary_backfill_filter as select 1 from %s where (%s)', source, filter);
    exception when others then
      perform tributary.capture_error(format('backfill(%s): the filter %s is not a valid WHERE condition on %s: %s', source, quote_literal(filter), source, sqlerrm),
        'Pass a condition as it would follow WHERE, e.g. ''created_at > now() - interval ''''1 day''''''.');
    end;
    select string_agg(distinct coalesce(p.oid::regprocedure::text, o.oid::regoperator::text), ', ') into called
      from pg_catalog.pg_depend d
      join pg_catalog.pg_rewrite r on r.oid = d.objid and d.classid = 'pg_catalog.pg_rewrite'::regclass
      left join pg_catalog.pg_proc p on d.refclassid = 'pg_catalog.pg_proc'::regclass and p.oid = d.refobjid
      left join pg_catalog.pg_operator o on d.refclassid = 'pg_catalog.pg_operator'::regclass and o.oid = d.refobjid
     where r.ev_class = 'pg_temp.tributary_backfill_filter'::regclass and d.refobjid >= 16384
       and (p.oid is not null or o.oid is not null);
    drop view pg_temp.tributary_backfill_filter;
    if called is not null then
      perform tributary.capture_error(format('backfill(%s): the filter calls %s, which PostgreSQL does not provide: the relay evaluates a backfill filter with its own rights, so it may use only built-in functions and operators', source, called),
        'Write the condition with built-in functions, or backfill every row (no filter).');
    end if;
  end if;
  update tributary.table_captures
     set snapshot_state = 'pending', snapshot_filter = filter, snapshot_cursor = null, snapshot_rows_done = 0,
         snapshot_rows_estimated = case when filter is null then tributary.capture_estimate(source) end,
         snapshot_requested_at = now(), snapshot_finished_at = null
   where id = live.id;
  perform pg_catalog.pg_logical_emit_message(true, 'tributary.cdc',
    json_build_object('op', 'backfill', 'id', live.id, 'token', live.token)::text);
end $$;

-- Each table's latest capture. state: 'snapshotting' (rows_done of about
-- rows_estimated read so far; the estimate is null for a filtered backfill
-- or a table never counted), 'streaming', or 'stopped' with stop_reason
-- ('uncaptured', 'table dropped', or what the relay could not do).
-- snapshot_state tells a requested snapshot ('pending') from one the relay
-- reads ('running'), and snapshot_requested_at which request it is.
create view tributary.captures as
  select distinct on (t.relid)
         t.schema_name || '.' || t.table_name as "table",
         t.stream,
         case when t.stopped_at is not null or c.oid is null then 'stopped'
              when t.snapshot_state in ('pending', 'running') then 'snapshotting'
              else 'streaming' end as state,
         case when t.stopped_at is not null then t.stop_reason
              when c.oid is null then 'table dropped' end as stop_reason,
         t.snapshot_rows_done as rows_done,
         t.snapshot_rows_estimated as rows_estimated,
         t.snapshot_filter as snapshot_filter,
         t.snapshot_state,
         t.snapshot_requested_at,
         t.key_columns,
         t.columns,
         t.started_at,
         t.last_change_at,
         t.snapshot_finished_at,
         t.stopped_at,
         t.start_lsn,
         t.id as capture_id
    from tributary.table_captures t
    left join pg_catalog.pg_class c on c.oid = t.relid
   order by t.relid, t.id desc;

-- Changes of partitions reach pgoutput as changes of the captured root.
alter publication tributary_relay set (publish_via_partition_root = true);

-- Privileges (the model of 0007).
revoke all on tributary.table_captures, tributary.captures from public;
grant select, insert, update on tributary.table_captures to tributary_admin;
grant select on tributary.captures to tributary_admin;
grant select on tributary.table_captures, tributary.captures to tributary_relay;
grant update (start_lsn, stop_lsn, stopped_at, stop_reason, last_change_at, snapshot_state, snapshot_cursor,
              snapshot_rows_done, snapshot_finished_at) on tributary.table_captures to tributary_relay;
revoke all on function tributary.capture(regclass, jsonb), tributary.uncapture(regclass), tributary.backfill(regclass, text) from public;
grant execute on function tributary.capture(regclass, jsonb), tributary.uncapture(regclass), tributary.backfill(regclass, text) to tributary_admin;
-- Helpers (0007's rule: EXECUTE on a function with the caller's rights is no boundary).
revoke all on function tributary.capture_error(text, text), tributary.capture_key(regclass), tributary.capture_estimate(regclass) from public;
grant execute on function tributary.capture_error(text, text), tributary.capture_key(regclass), tributary.capture_estimate(regclass)
  to tributary_admin, tributary_relay, tributary_writer, tributary_reader, tributary_worker;
