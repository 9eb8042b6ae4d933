-- The privilege model (docs/ARCHITECTURE.md invariant 12: a role sees, appends to,
-- consumes and administers only what it was granted).
--
-- Two layers:
--
--   1. Group roles (NOLOGIN, cluster-wide, created here once per cluster)
--      give the verbs: EXECUTE on the functions and table/column privileges.
--        tributary_admin   everything: streams, queues, schedules, limits
--                          (set_limit), grants, redrive, status. Not the
--                          signing keys, and no writes to what the relay writes.
--        tributary_relay   the relay: its checkpoint, the offset counters,
--                          the stream table, the signing keys, the set-aside
--                          messages, its lease. Its login role also needs
--                          LOGIN REPLICATION BYPASSRLS itself (attributes are
--                          not inherited; COPY into a table with row-level
--                          security is refused unless the role bypasses it).
--        tributary_writer  append, append_many, create_stream, send.
--        tributary_reader  read tributary.events, run consumer groups.
--        tributary_worker  claim, ack, nack, extend, release on queues.
--      Members get them with GRANT tributary_reader TO alice (run by a role
--      with CREATEROLE or ADMIN OPTION on the group role).
--
--   2. Grants per object, in tributary.grants, say which streams, queues and
--      groups: grant_stream(role, pattern, 'read' | 'write'),
--      grant_queue(role, pattern, 'send' | 'work'), grant_group(role,
--      pattern), and their revoke_* twins (tributary_admin runs them). A
--      grant to a role applies to every role that inherits its privileges.
--      A pattern is a name in which '*' matches any run of characters
--      (dots included): 'orders', 'orders.*', '*'.
--
-- How the second layer is enforced, without redefining the verbs' bodies:
--   * append / append_many (SECURITY DEFINER, 0006) call authorize_append()
--     for every event: defined below.
--   * Everything else runs with the caller's rights: row-level security on
--     every table a verb or a client touches directly. Each policy looks the
--     caller's patterns up in a `(select ...)` subquery, an InitPlan run once
--     per statement, then matches rows with LIKE ANY.
--   * Column privileges: a worker may update a message's delivery state
--     (receipt, locked_until, history, ...) but never its payload, key or
--     queue.
--   * queue_settings() (every queue verb's first lookup) tells a caller who
--     lacks a grant so, instead of claiming the queue does not exist.
--
-- Superusers and the tables' owner (the role that runs migrate) bypass all
-- of it. Default privileges: functions this owner creates in the schema from
-- now on are not executable by PUBLIC; a later migration grants what a new
-- function needs.

-- ---------------------------------------------------------------------------
-- Group roles. Roles are cluster-wide: several databases of one cluster each
-- run migrate (possibly at once), so create each one only if missing.

do $$
declare
  wanted text[] := array['tributary_admin', 'tributary_relay', 'tributary_writer', 'tributary_reader', 'tributary_worker'];
  missing text[];
  r text;
begin
  select array_agg(w order by w) into missing
    from unnest(wanted) w where not exists (select 1 from pg_catalog.pg_roles where rolname = w);
  if missing is null then return; end if;
  if not (select rolcreaterole or rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    raise exception 'tributary migrate creates the group roles %, and role % may not create roles: run migrate once as a role with CREATEROLE (or a superuser), or have one run: %',
      array_to_string(missing, ', '), current_user, (select string_agg(format('CREATE ROLE %I NOLOGIN;', m), ' ') from unnest(missing) m)
      using errcode = '42501';
  end if;
  foreach r in array missing loop
    begin
      execute format('create role %I nologin', r);
    exception when duplicate_object or unique_violation then
      null; -- another database's migrate created it just now
    end;
  end loop;
end $$;

-- ---------------------------------------------------------------------------
-- Per-object grants

create table tributary.grants (
  role          regrole not null,
  kind          text not null check (kind in ('stream', 'queue', 'group')),
  pattern       text not null check (pattern ~ '^[A-Za-z0-9._*-]{1,200}$'),
  privilege     text not null check (privilege in ('read', 'write', 'send', 'work', 'consume')),
  -- The pattern as a LIKE pattern: '_' is a name character, '*' the wildcard.
  like_pattern  text not null generated always as (replace(replace(pattern, '_', '\_'), '*', '%')) stored,
  granted_at    timestamptz not null default now(),
  granted_by    name not null default current_user,
  primary key (role, kind, pattern, privilege),
  check (case kind when 'stream' then privilege in ('read', 'write')
                   when 'queue' then privilege in ('send', 'work')
                   else privilege = 'consume' end)
);

comment on table tributary.grants is
  'Which streams, queues and groups a role may use (tributary.grant_stream, grant_queue, grant_group). '
  'A grant to a role applies to every role that inherits its privileges.';

/** The LIKE patterns of `kind` granted to the current user (directly or through a role it inherits) with one of `privileges`. */
create function tributary.granted_patterns(kind text, privileges text[]) returns text[]
language sql stable as $$
  select coalesce(array_agg(g.like_pattern), '{}')
    from tributary.grants g
   where g.kind = granted_patterns.kind and g.privilege = any (granted_patterns.privileges)
     and pg_catalog.pg_has_role(g.role, 'USAGE')
$$;

/** Whether `who` holds a grant of `kind` on `name` with one of `privileges`, or is an admin. */
create function tributary.has_grant(who name, kind text, name text, privileges text[]) returns boolean
language sql stable as $$
  select pg_catalog.pg_has_role(who, 'tributary_admin', 'USAGE')
      or exists (select 1 from tributary.grants g
                  where g.kind = has_grant.kind and g.privilege = any (has_grant.privileges)
                    and has_grant.name like g.like_pattern
                    and pg_catalog.pg_has_role(who, g.role, 'USAGE'))
$$;

/** 42501 saying who lacks what, and the statement an admin runs to grant it. */
create function tributary.permission_error(who name, verb text, kind text, name text, privilege text) returns void
language plpgsql as $$
begin
  raise exception 'permission denied: role % may not % % % (it has no % grant on it)', who, verb, kind, quote_literal(name), privilege
    using errcode = '42501',
          hint = format('An admin grants it with: select tributary.grant_%s(%L, %L%s);',
                        kind, who, name, case when kind = 'group' then '' else format(', %L', privilege) end);
end $$;

create function tributary.validate_grant(role regrole, kind text, pattern text, privilege text) returns void
language plpgsql as $$
declare
  group_role text := case privilege when 'read' then 'tributary_reader' when 'consume' then 'tributary_reader'
                                    when 'write' then 'tributary_writer' when 'send' then 'tributary_writer'
                                    when 'work' then 'tributary_worker' end;
begin
  if role is null then
    raise exception 'grant: role must not be NULL' using errcode = '22023', constraint = 'tributary_grant';
  end if;
  if pattern is null or pattern !~ '^[A-Za-z0-9._*-]{1,200}$' then
    raise exception 'invalid % pattern %: a pattern is a % name (A-Z a-z 0-9 . _ -) in which * matches any characters, e.g. ''orders'', ''orders.*'', ''*''',
      kind, coalesce(quote_literal(left(pattern, 210)), 'NULL'), kind
      using errcode = '22023', constraint = 'tributary_grant';
  end if;
  if group_role is null or (kind = 'stream' and privilege not in ('read', 'write'))
     or (kind = 'queue' and privilege not in ('send', 'work')) then
    raise exception 'invalid % privilege %: use %', kind, coalesce(quote_literal(privilege), 'NULL'),
      case kind when 'stream' then '''read'' or ''write''' else '''send'' or ''work''' end
      using errcode = '22023', constraint = 'tributary_grant';
  end if;
  if not pg_catalog.pg_has_role(role, group_role, 'USAGE') then
    -- Granted anyway (the membership may come later), but say why it does nothing yet.
    raise warning 'role % is not a member of %, so this % grant has no effect until: GRANT % TO %;', role, group_role, privilege, group_role, role;
  end if;
end $$;

create function tributary.grant_stream(role regrole, pattern text, privilege text) returns void
language plpgsql as $$
begin
  perform tributary.validate_grant(role, 'stream', pattern, privilege);
  insert into tributary.grants (role, kind, pattern, privilege) values (role, 'stream', pattern, privilege) on conflict do nothing;
end $$;

create function tributary.grant_queue(role regrole, pattern text, privilege text) returns void
language plpgsql as $$
begin
  perform tributary.validate_grant(role, 'queue', pattern, privilege);
  insert into tributary.grants (role, kind, pattern, privilege) values (role, 'queue', pattern, privilege) on conflict do nothing;
end $$;

create function tributary.grant_group(role regrole, pattern text) returns void
language plpgsql as $$
begin
  perform tributary.validate_grant(role, 'group', pattern, 'consume');
  insert into tributary.grants (role, kind, pattern, privilege) values (role, 'group', pattern, 'consume') on conflict do nothing;
end $$;

/** Revokes exactly the grant that was given (same role, pattern, privilege); returns whether there was one. */
create function tributary.revoke_stream(role regrole, pattern text, privilege text) returns boolean
language sql as $$
  with gone as (delete from tributary.grants g where g.role = revoke_stream.role and g.kind = 'stream'
                   and g.pattern = revoke_stream.pattern and g.privilege = revoke_stream.privilege returning 1)
  select exists (select 1 from gone)
$$;

create function tributary.revoke_queue(role regrole, pattern text, privilege text) returns boolean
language sql as $$
  with gone as (delete from tributary.grants g where g.role = revoke_queue.role and g.kind = 'queue'
                   and g.pattern = revoke_queue.pattern and g.privilege = revoke_queue.privilege returning 1)
  select exists (select 1 from gone)
$$;

create function tributary.revoke_group(role regrole, pattern text) returns boolean
language sql as $$
  with gone as (delete from tributary.grants g where g.role = revoke_group.role and g.kind = 'group'
                   and g.pattern = revoke_group.pattern returning 1)
  select exists (select 1 from gone)
$$;

/** Every grant, by role; `via` lists the Tributary group roles the role is a member of. */
create view tributary.grant_list with (security_invoker = true) as
select g.role::text as role, g.kind, g.pattern, g.privilege,
       array(select r.rolname::text from pg_catalog.pg_roles r
              where r.rolname in ('tributary_admin', 'tributary_relay', 'tributary_writer', 'tributary_reader', 'tributary_worker')
                and pg_catalog.pg_has_role(g.role, r.oid, 'MEMBER')
              order by 1) as via,
       g.granted_at, g.granted_by
  from tributary.grants g;

-- ---------------------------------------------------------------------------
-- Checks with clear errors, for the verbs

/**
 * Called by append / append_many (SECURITY DEFINER) for every event: the hot
 * path, so the owner's and admins' pass is two cached membership checks and
 * a writer's one small query (bench:append).
 *
 * Inside append current_user is append's owner (the role that ran migrate),
 * so the caller is the session's effective role: the role of SET ROLE, else
 * the login role. Edge: a SECURITY DEFINER function of another role that
 * calls append is checked as the session's role too, not as its owner (it
 * fails closed unless the session's role may write the stream). Executable
 * only by the owner (and admins): called directly by anyone else, the
 * owner test below would not mean anything.
 */
create or replace function tributary.authorize_append(stream text) returns void
language plpgsql stable as $$
declare
  caller text := coalesce(nullif(current_setting('role'), 'none'), session_user);
begin
  if pg_catalog.pg_has_role(caller, current_user, 'USAGE') or pg_catalog.pg_has_role(caller, 'tributary_admin', 'USAGE') then
    return; -- the owner, a superuser, an admin
  end if;
  if not exists (select 1 from tributary.grants g
                  where g.kind = 'stream' and g.privilege = 'write' and stream like g.like_pattern
                    and pg_catalog.pg_has_role(caller, g.role, 'USAGE')) then
    perform tributary.permission_error(caller, 'append to', 'stream', stream, 'write');
  end if;
end $$;

/** For readers: a clear error instead of an empty read when the current user may not read `stream`. */
create function tributary.authorize_read(stream text) returns void
language plpgsql stable as $$
begin
  if not tributary.has_grant(current_user, 'stream', stream, '{read}') then
    perform tributary.permission_error(current_user, 'read', 'stream', stream, 'read');
  end if;
end $$;

/** For group members: a clear error when the current user may not join or commit in `group_name`. */
create function tributary.authorize_group(group_name text) returns void
language plpgsql stable as $$
begin
  if not tributary.has_grant(current_user, 'group', group_name, '{consume}') then
    perform tributary.permission_error(current_user, 'consume in', 'group', group_name, 'consume');
  end if;
end $$;

/** Whether a queue exists, whoever may see it (queue_settings' error message). */
create function tributary.queue_exists(queue text) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select exists (select 1 from tributary.queues q where q.name = queue)
$$;

/**
 * The queue's row, or an error: the queue does not exist, or the caller has
 * no grant on it (row-level security hides it). Same signature and result as
 * 0003's; every queue verb looks its queue up here first.
 */
create or replace function tributary.queue_settings(queue text) returns tributary.queues
language plpgsql stable as $$
declare
  q tributary.queues;
begin
  select * into q from tributary.queues where name = queue;
  if not found then
    if tributary.queue_exists(queue) then
      raise exception 'permission denied: role % may not use queue % (it has no send or work grant on it)', current_user, quote_literal(queue)
        using errcode = '42501',
              hint = format('An admin grants it with: select tributary.grant_queue(%L, %L, ''work'');  (or ''send'' to send to it)', current_user, queue);
    end if;
    perform tributary.queue_error(format('queue %s does not exist', coalesce(quote_literal(queue), 'NULL')),
      'tributary_queue_unknown', 'create it with tributary.create_queue(name, options)');
  end if;
  return q;
end $$;

-- Limits change only through set_limit (it checks each limit's range), run as the owner.
alter function tributary.set_limit(text, bigint) security definer set search_path = pg_catalog, pg_temp;

-- The scheduler runs in worker processes; a schedule only sends what an
-- admin scheduled, so firing runs as the owner.
alter function tributary.fire_schedules() security definer set search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------------
-- PUBLIC gets nothing; each group role gets its verbs.

revoke all on all tables in schema tributary from public;
revoke all on all sequences in schema tributary from public;
revoke all on all functions in schema tributary from public;
alter default privileges in schema tributary revoke execute on functions from public;
alter default privileges in schema tributary grant execute on functions to tributary_admin;

grant usage on schema tributary to tributary_admin, tributary_relay, tributary_writer, tributary_reader, tributary_worker;

-- Helpers. EXECUTE on a function that runs with the caller's rights is no
-- boundary (table privileges and row-level security are), so every such
-- function that is not a verb is executable by the three user roles: the
-- verbs call helpers the other migrations add (option checks, limits, ...).
-- A verb is granted below by name, to the roles that may use it; a SECURITY
-- DEFINER function is granted only by name (queue_exists here; append,
-- append_many, fire_schedules below), never as a helper.
do $$
declare
  verbs text[] := array[
    'append', 'append_many', 'create_stream', 'send',                        -- writers
    'claim', 'ack', 'ack_batch', 'nack', 'extend', 'release', 'fire_schedules', -- workers
    'create_queue', 'schedule', 'unschedule', 'redrive', 'set_limit',         -- admins
    'grant_stream', 'grant_queue', 'grant_group', 'revoke_stream', 'revoke_queue', 'revoke_group', 'validate_grant',
    'authorize_append'];                                                       -- only append (as the owner) calls it
  f regprocedure;
begin
  for f in
    select p.oid from pg_catalog.pg_proc p
     where p.pronamespace = 'tributary'::regnamespace and not p.prosecdef and p.prokind = 'f'
       and p.proname <> all (verbs)
  loop
    execute format('grant execute on function %s to tributary_writer, tributary_reader, tributary_worker', f);
  end loop;
end $$;
grant execute on function tributary.queue_exists(text) to tributary_writer, tributary_reader, tributary_worker;

grant execute on function
  tributary.append(text, text, text, jsonb, jsonb), tributary.append_many(text[], text[], text[], jsonb[], jsonb[]),
  tributary.create_stream(text, int), tributary.send(text, jsonb, jsonb)
  to tributary_writer;
grant execute on function tributary.create_stream(text, int) to tributary_reader;
grant execute on function
  tributary.claim(text, text, int, interval), tributary.ack(text, uuid), tributary.ack_batch(text, uuid[]),
  tributary.nack(text, uuid, text, interval), tributary.extend(text, uuid, interval), tributary.release(text, uuid[]),
  tributary.fire_schedules()
  to tributary_worker;
grant execute on all functions in schema tributary to tributary_admin;

-- The admin: every table (row-level security below lets it see every row),
-- not the signing keys. What only the relay writes it reads; it may delete
-- set-aside messages it has dealt with. Limits change through set_limit().
grant select, insert, update, delete on all tables in schema tributary to tributary_admin;
revoke all on tributary.signing_keys from tributary_admin;
revoke insert, update, delete on tributary.events, tributary.partition_offsets, tributary.relay_checkpoints,
  tributary.relay_leases, tributary.schema_migrations, tributary.limits from tributary_admin;
revoke insert, update on tributary.rejected_messages from tributary_admin;

-- The relay: the stream table, the offset counters, its checkpoint, the
-- signing keys (it verifies), the set-aside messages, its lease.
grant select, insert on tributary.events to tributary_relay;
grant select, insert, update on tributary.partition_offsets to tributary_relay;
grant select, update on tributary.relay_checkpoints to tributary_relay;
grant select on tributary.streams, tributary.signing_keys, tributary.limits to tributary_relay;
grant select, insert on tributary.rejected_messages to tributary_relay;
grant select, insert, update, delete on tributary.relay_leases to tributary_relay;

-- Everyone may read the operator's limits (append enforces them as the owner).
grant select on tributary.limits to tributary_writer, tributary_reader, tributary_worker;

-- Writers: create streams (rows: granted ones), send (insert; the dedupe lookup reads ids).
grant select, insert on tributary.streams to tributary_writer;
grant select on tributary.queues to tributary_writer;
grant select (id, queue, key, dedupe_key) on tributary.queue_messages to tributary_writer;
grant insert (queue, key, dedupe_key, payload, visible_at) on tributary.queue_messages to tributary_writer;

-- Readers: events, the stream list and ends, and their groups' state.
grant select on tributary.events, tributary.partition_offsets, tributary.group_lag to tributary_reader;
grant select, insert on tributary.streams to tributary_reader;
grant select, insert, update, delete on tributary.consumer_groups, tributary.group_members,
  tributary.group_assignments, tributary.group_offsets to tributary_reader;

-- Workers: their queues' messages (delivery state only, never the payload,
-- key or queue), dead letters (a last delivery buries), worker registry.
-- INSERT: a stream-fed queue's feeder (queue-feeder.ts) writes messages; it
-- also needs a send grant on the queue.
grant select on tributary.queues to tributary_worker;
grant select, delete on tributary.queue_messages to tributary_worker;
grant update (receipt, deliveries, locked_until, claimed_by, claimed_at, last_error, history, visible_at)
  on tributary.queue_messages to tributary_worker;
grant insert (queue, key, payload, visible_at) on tributary.queue_messages to tributary_worker;
grant select, insert on tributary.queue_dead_letters to tributary_worker;
grant select, insert, update, delete on tributary.queue_workers to tributary_worker;
grant select on tributary.queue_schedules to tributary_worker;
-- Workers VACUUM the churning message table themselves (queue-vacuum.ts); PostgreSQL 17+ can grant that.
do $$
begin
  if current_setting('server_version_num')::int >= 170000 then
    execute 'grant maintain on tributary.queue_messages to tributary_worker';
  end if;
end $$;

-- Views read their tables with the querying role's rights (and its row-level security).
alter view tributary.group_lag set (security_invoker = true);

-- ---------------------------------------------------------------------------
-- Row-level security. Every policy's lookup is a `(select ...)`: evaluated
-- once per statement, not per row (the ::text[] makes `like any (...)` take
-- the array, not a subquery's rows). The match is wrapped in a CASE so the
-- planner estimates it as a coin flip: a bare LIKE ANY of a parameter is
-- estimated to keep ~5% of the rows, and then a reader's `order by "offset"
-- limit 500` scan of a partition turned into a bitmap scan of the whole rest
-- of the partition plus a sort (150x slower on a 25,000-event partition). `to tributary_admin using (true)` lets an
-- admin see and change every row its table privileges allow.

alter table tributary.grants enable row level security;
create policy admin_all on tributary.grants to tributary_admin using (true) with check (true);
-- A role sees the grants it holds (directly or inherited): granted_patterns reads them.
create policy own_grants on tributary.grants for select using (pg_catalog.pg_has_role(role, 'USAGE'));
grant select on tributary.grants, tributary.grant_list to tributary_relay, tributary_writer, tributary_reader, tributary_worker;

alter table tributary.events enable row level security;
create policy admin_all on tributary.events to tributary_admin using (true);
create policy readers on tributary.events for select to tributary_reader
  using (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);

alter table tributary.streams enable row level security;
create policy admin_all on tributary.streams to tributary_admin using (true) with check (true);
create policy granted on tributary.streams for select to tributary_reader, tributary_writer
  using (case when name like any ((select tributary.granted_patterns('stream', '{read,write}'))::text[]) then true else false end);
create policy create_granted on tributary.streams for insert to tributary_reader, tributary_writer
  with check (case when name like any ((select tributary.granted_patterns('stream', '{read,write}'))::text[]) then true else false end);
create policy relay_all on tributary.streams for select to tributary_relay using (true);

alter table tributary.partition_offsets enable row level security;
create policy admin_all on tributary.partition_offsets to tributary_admin using (true);
create policy readers on tributary.partition_offsets for select to tributary_reader
  using (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);
create policy relay_all on tributary.partition_offsets to tributary_relay using (true) with check (true);

do $$
declare
  t text;
begin
  foreach t in array array['consumer_groups', 'group_members', 'group_assignments', 'group_offsets'] loop
    execute format('alter table tributary.%I enable row level security', t);
    execute format('create policy admin_all on tributary.%I to tributary_admin using (true) with check (true)', t);
    execute format($p$create policy own_groups on tributary.%I to tributary_reader
                        using (case when group_name like any ((select tributary.granted_patterns('group', '{consume}'))::text[]) then true else false end)$p$, t);
  end loop;
end $$;
-- A commit also needs read on the stream (the member read what it commits).
create policy readable_streams on tributary.group_offsets as restrictive for insert to tributary_reader
  with check (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);
create policy readable_streams_update on tributary.group_offsets as restrictive for update to tributary_reader
  using (true) with check (case when stream like any ((select tributary.granted_patterns('stream', '{read}'))::text[]) then true else false end);

alter table tributary.queues enable row level security;
create policy admin_all on tributary.queues to tributary_admin using (true) with check (true);
create policy granted on tributary.queues for select to tributary_writer, tributary_worker
  using (case when name like any ((select tributary.granted_patterns('queue', '{send,work}'))::text[]) then true else false end);

alter table tributary.queue_messages enable row level security;
create policy admin_all on tributary.queue_messages to tributary_admin using (true) with check (true);
create policy senders on tributary.queue_messages for select to tributary_writer, tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{send}'))::text[]) then true else false end);
create policy send on tributary.queue_messages for insert to tributary_writer, tributary_worker
  with check (case when queue like any ((select tributary.granted_patterns('queue', '{send}'))::text[]) then true else false end);
create policy workers on tributary.queue_messages for select to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);
create policy work on tributary.queue_messages for update to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end)
  with check (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);
create policy ack on tributary.queue_messages for delete to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);

alter table tributary.queue_dead_letters enable row level security;
create policy admin_all on tributary.queue_dead_letters to tributary_admin using (true) with check (true);
create policy workers on tributary.queue_dead_letters for select to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);
create policy bury on tributary.queue_dead_letters for insert to tributary_worker
  with check (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);

alter table tributary.queue_workers enable row level security;
create policy admin_all on tributary.queue_workers to tributary_admin using (true) with check (true);
create policy workers on tributary.queue_workers to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end)
  with check (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);

alter table tributary.queue_schedules enable row level security;
create policy admin_all on tributary.queue_schedules to tributary_admin using (true) with check (true);
-- The scheduler's next-due lookup (queue-scheduler.ts) in worker processes: when, not what.
create policy workers on tributary.queue_schedules for select to tributary_worker
  using (case when queue like any ((select tributary.granted_patterns('queue', '{work}'))::text[]) then true else false end);
