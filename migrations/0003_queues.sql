-- Queues: per-message delivery, SQS-style (docs/ARCHITECTURE.md invariant 10).
--
-- A message is delivered to one worker at a time: claim() gives it a receipt
-- and hides it until now() + visibility timeout. ack() deletes it; nack()
-- makes it visible again after a backoff; a claim that expires makes it
-- visible again by itself. Every delivery counts: after max_deliveries the
-- message moves to tributary.queue_dead_letters with its last error and
-- delivery history. All times are the database's now().
--
-- FIFO queues: messages sharing a key are never in flight at the same time
-- and are delivered in id (send) order; other keys proceed in parallel.
-- FIFO claims of one queue are serialized by an advisory lock, so two
-- claims cannot both see a key as free.
--
-- Churn: acknowledged messages are deleted, so the table holds only pending
-- and in-flight messages. It is vacuumed aggressively (threshold, not scale
-- factor; no cost delay) so dead index entries at the head of the claim
-- index are cleared quickly; fillfactor leaves room for claim updates.

create table tributary.queues (
  name                text primary key,
  visibility_timeout  interval not null default '30 seconds',
  max_deliveries      int not null default 5,
  backoff_base        interval not null default '1 second',
  backoff_max         interval not null default '5 minutes',
  backoff_jitter      float8 not null default 0.2,
  fifo                boolean not null default false,
  stream              text,
  -- NOTIFY tributary_jobs on every state change (queued, running, succeeded, failed, dead).
  notify_states       boolean not null default false,
  created_at          timestamptz not null default now()
);

create table tributary.queue_messages (
  id           bigint generated always as identity primary key,
  queue        text not null references tributary.queues on delete cascade,
  key          text,
  dedupe_key   text,
  payload      jsonb not null,
  enqueued_at  timestamptz not null default now(),
  visible_at   timestamptz not null,
  deliveries   int not null default 0,
  receipt      uuid,
  claimed_by   text,
  claimed_at   timestamptz,
  last_error   text,
  -- One entry per delivery that failed or expired: {"at", "worker", "error"}.
  history      jsonb not null default '[]'
) with (fillfactor = 80, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);

-- claim(): the visible messages of a queue, oldest first.
create index queue_messages_claim_idx on tributary.queue_messages (queue, visible_at, id);
-- FIFO: the head of each key, and whether a key is in flight.
create index queue_messages_key_idx on tributary.queue_messages (queue, key, id) where key is not null;
-- send(dedupe_key): a second send while the first is pending returns the first id.
create unique index queue_messages_dedupe_idx on tributary.queue_messages (queue, dedupe_key) where dedupe_key is not null;
-- ack/nack/extend find a message by its receipt: unique, so even a generic plan without statistics
-- knows it is one row (a non-unique index let the planner AND it with a scan of the whole queue).
create unique index queue_messages_receipt_idx on tributary.queue_messages (receipt) where receipt is not null;


create table tributary.queue_dead_letters (
  id           bigint primary key,
  queue        text not null references tributary.queues on delete cascade,
  key          text,
  payload      jsonb not null,
  enqueued_at  timestamptz not null,
  dead_at      timestamptz not null default now(),
  deliveries   int not null,
  last_error   text,
  history      jsonb not null
);
create index queue_dead_letters_queue_idx on tributary.queue_dead_letters (queue, id);

create function tributary.queue_error(message text, rule text, hint text default null) returns void
language plpgsql as $$
begin
  raise exception '%', message using errcode = '22023', constraint = rule, hint = coalesce(hint, '');
end $$;

create function tributary.validate_queue_name(queue text) returns void
language plpgsql immutable as $$
begin
  if queue is null or queue !~ '^[A-Za-z0-9._-]{1,200}$' then
    perform tributary.queue_error(format('invalid queue name %s: a queue name is 1 to 200 characters of A-Z a-z 0-9 . _ -',
      coalesce(quote_literal(left(queue, 210)), 'NULL')), 'tributary_queue_name');
  end if;
end $$;

/** The queue's row, or an error naming the queue and how to create it. */
create function tributary.queue_settings(queue text) returns tributary.queues
language plpgsql stable as $$
declare
  q tributary.queues;
begin
  select * into q from tributary.queues where name = queue;
  if not found then
    perform tributary.queue_error(format('queue %s does not exist', coalesce(quote_literal(queue), 'NULL')),
      'tributary_queue_unknown', 'create it with tributary.create_queue(name, options)');
  end if;
  return q;
end $$;

create function tributary.option_interval(options jsonb, name text, fallback interval) returns interval
language plpgsql immutable as $$
declare
  value interval;
begin
  if options is null or not options ? name or options -> name = 'null'::jsonb then return fallback; end if;
  begin
    value := case jsonb_typeof(options -> name)
               when 'number' then (options ->> name)::float8 * interval '1 second'
               else (options ->> name)::interval end;
  exception when others then
    perform tributary.queue_error(format('option %s: %s is not a duration (use seconds, e.g. 30, or an interval, e.g. ''5 minutes'')',
      name, options -> name), 'tributary_queue_option');
  end;
  if value < interval '0' then
    perform tributary.queue_error(format('option %s must not be negative (got %s)', name, options -> name), 'tributary_queue_option');
  end if;
  return value;
end $$;

create function tributary.create_queue(name text, options jsonb default '{}') returns void
language plpgsql as $$
declare
  known text[] := array['visibility_timeout', 'max_deliveries', 'backoff', 'fifo', 'stream', 'notify_states'];
  unknown text;
  q tributary.queues;
  backoff jsonb := coalesce(options -> 'backoff', '{}');
begin
  perform tributary.validate_queue_name(name);
  if options is null or jsonb_typeof(options) <> 'object' then
    perform tributary.queue_error('queue options must be a JSON object', 'tributary_queue_option');
  end if;
  select k into unknown from jsonb_object_keys(options) k where k <> all (known) limit 1;
  if unknown is not null then
    perform tributary.queue_error(format('unknown queue option %s: the options are %s', quote_literal(unknown), array_to_string(known, ', ')),
      'tributary_queue_option');
  end if;
  q.name := name;
  q.visibility_timeout := tributary.option_interval(options, 'visibility_timeout', interval '30 seconds');
  if q.visibility_timeout <= interval '0' then
    perform tributary.queue_error('option visibility_timeout must be positive', 'tributary_queue_option');
  end if;
  q.max_deliveries := coalesce((options ->> 'max_deliveries')::int, 5);
  if q.max_deliveries < 1 then
    perform tributary.queue_error('option max_deliveries must be at least 1', 'tributary_queue_option');
  end if;
  q.backoff_base := tributary.option_interval(backoff, 'base', interval '1 second');
  q.backoff_max := tributary.option_interval(backoff, 'max', interval '5 minutes');
  q.backoff_jitter := coalesce((backoff ->> 'jitter')::float8, 0.2);
  if q.backoff_jitter < 0 or q.backoff_jitter > 1 then
    perform tributary.queue_error('option backoff.jitter must be between 0 and 1', 'tributary_queue_option');
  end if;
  q.fifo := coalesce((options ->> 'fifo')::boolean, false);
  q.notify_states := coalesce((options ->> 'notify_states')::boolean, false);
  q.stream := options ->> 'stream';
  if q.stream is not null then
    -- Fed by a stream: every event becomes a message (a feeder runs in work()).
    perform tributary.validate_stream_name(q.stream);
  end if;
  q.created_at := now();
  insert into tributary.queues values (q.*)
  on conflict on constraint queues_pkey do update
     set visibility_timeout = excluded.visibility_timeout, max_deliveries = excluded.max_deliveries,
         backoff_base = excluded.backoff_base, backoff_max = excluded.backoff_max,
         backoff_jitter = excluded.backoff_jitter, fifo = excluded.fifo, stream = excluded.stream,
         notify_states = excluded.notify_states;
end $$;

/**
 * A job's state change, for watchers (queues created with notify_states):
 * NOTIFY tributary_jobs '{"queue", "id", "state", "deliveries", "error", "at"}'.
 * Delivered when the transaction commits, in commit order; watchers that are
 * not listening miss it (the queue tables hold the current state).
 */
create function tributary.job_state(queue text, id bigint, state text, deliveries int, error text default null) returns void
language sql as $$
  select pg_notify('tributary_jobs', json_build_object(
    'queue', queue, 'id', id, 'state', state, 'deliveries', deliveries, 'error', left(error, 1000), 'at', clock_timestamp())::text);
$$;

create function tributary.send(queue text, payload jsonb, options jsonb default '{}') returns bigint
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  known text[] := array['delay', 'run_at', 'key', 'dedupe_key'];
  unknown text;
  visible timestamptz := now();
  new_id bigint;
begin
  if payload is null then
    perform tributary.queue_error('payload must not be SQL NULL (use ''null''::jsonb for a JSON null)', 'tributary_queue_payload');
  end if;
  if octet_length(payload::text) > tributary.max_data_bytes() then
    perform tributary.queue_error(format('payload is %s bytes, over the limit of %s bytes', octet_length(payload::text), tributary.max_data_bytes()),
      'tributary_queue_payload', 'raise tributary.max_data_bytes, or send a reference to the data instead');
  end if;
  options := coalesce(options, '{}');
  if jsonb_typeof(options) <> 'object' then
    perform tributary.queue_error('send options must be a JSON object', 'tributary_queue_option');
  end if;
  select k into unknown from jsonb_object_keys(options) k where k <> all (known) limit 1;
  if unknown is not null then
    perform tributary.queue_error(format('unknown send option %s: the options are %s', quote_literal(unknown), array_to_string(known, ', ')),
      'tributary_queue_option');
  end if;
  if options ? 'delay' and options ? 'run_at' then
    perform tributary.queue_error('give delay or run_at, not both', 'tributary_queue_option');
  end if;
  if options ? 'delay' then
    visible := now() + tributary.option_interval(options, 'delay', interval '0');
  elsif options ? 'run_at' then
    begin
      visible := greatest((options ->> 'run_at')::timestamptz, now());
    exception when others then
      perform tributary.queue_error(format('option run_at: %s is not a timestamp', options -> 'run_at'), 'tributary_queue_option');
    end;
  end if;
  if options ? 'key' and (jsonb_typeof(options -> 'key') <> 'string' or options ->> 'key' = '') then
    perform tributary.queue_error('option key must be a non-empty string', 'tributary_queue_option');
  end if;
  if q.fifo and not options ? 'key' then
    perform tributary.queue_error(format('queue %s is FIFO: give every message a key (its FIFO group)', quote_literal(queue)),
      'tributary_queue_option');
  end if;
  if options ? 'dedupe_key' then
    select id into new_id from tributary.queue_messages m
     where m.queue = send.queue and m.dedupe_key = options ->> 'dedupe_key';
    if found then return new_id; end if;
  end if;
  insert into tributary.queue_messages (queue, key, dedupe_key, payload, visible_at)
  values (send.queue, send.options ->> 'key', send.options ->> 'dedupe_key', send.payload, visible)
  on conflict (queue, dedupe_key) where dedupe_key is not null do nothing
  returning id into new_id;
  if new_id is null then
    -- A concurrent send with the same dedupe key won.
    select id into new_id from tributary.queue_messages m
     where m.queue = send.queue and m.dedupe_key = options ->> 'dedupe_key';
  elsif q.notify_states then
    perform tributary.job_state(send.queue, new_id, 'queued', 0);
  end if;
  perform pg_notify('tributary_queue', queue);
  return new_id;
end $$;

/** Moves a message to the dead letters (its last delivery failed or expired). */
create function tributary.bury(message tributary.queue_messages, error text) returns void
language sql as $$
  with gone as (delete from tributary.queue_messages where id = message.id returning *)
  insert into tributary.queue_dead_letters (id, queue, key, payload, enqueued_at, deliveries, last_error, history)
  select id, queue, key, payload, enqueued_at, deliveries, coalesce(error, last_error), history from gone;
$$;

create type tributary.claimed_message as (
  id bigint, receipt uuid, payload jsonb, key text, deliveries int, enqueued_at timestamptz, visible_until timestamptz
);

/** claim()'s one statement: pick (FIFO-aware), then hand out receipts. */
create function tributary.claim_batch(q tributary.queues, worker text, max int, visibility interval)
returns setof tributary.claimed_message
language plpgsql as $$
begin
  return query
  with picked as (
    select m.id from tributary.queue_messages m
     where m.queue = q.name and m.visible_at <= now()
       and m.deliveries < q.max_deliveries
       and (not q.fifo or (
             -- the head of its key, and no message of its key in flight
             not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.id < m.id)
         and not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.receipt is not null and p.visible_at > now())))
     order by m.visible_at, m.id
     for update skip locked
     limit max
  ), expired_history as (
    -- A claim that expired counts as a failed delivery in the history.
    select m.id from tributary.queue_messages m join picked using (id) where m.receipt is not null
  )
  update tributary.queue_messages m
     set receipt = gen_random_uuid(),
         deliveries = m.deliveries + 1,
         visible_at = now() + coalesce(visibility, q.visibility_timeout),
         claimed_by = worker,
         claimed_at = now(),
         history = case when m.id in (select id from expired_history)
                        then m.history || jsonb_build_object('at', m.visible_at, 'worker', m.claimed_by, 'error', 'visibility timeout expired')
                        else m.history end
    from picked
   where m.id = picked.id
  returning m.id, m.receipt, m.payload, m.key, m.deliveries, m.enqueued_at, m.visible_at;
end $$;

create function tributary.claim(queue text, worker text, max int default 1, visibility interval default null)
returns setof tributary.claimed_message
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
  expired tributary.queue_messages;
  claimed_row tributary.claimed_message;
begin
  if worker is null or worker = '' then
    perform tributary.queue_error('worker must name the claiming worker (any non-empty text)', 'tributary_queue_worker');
  end if;
  if max is null or max < 1 or max > 10000 then
    perform tributary.queue_error(format('max must be 1 to 10000 (got %s)', max), 'tributary_queue_option');
  end if;
  if visibility is not null and visibility <= interval '0' then
    perform tributary.queue_error('visibility must be positive', 'tributary_queue_option');
  end if;
  if q.fifo then
    perform pg_advisory_xact_lock(1953655153, hashtext(queue)); -- 0x74726971 "triq": FIFO claims of this queue, one at a time
  end if;
  -- Claims that expired on their last allowed delivery: to the dead letters. Only the head
  -- this claim is about to read (an ordered scan of the claim index, never the backlog,
  -- whatever the statistics say); one further back is buried when it reaches the head.
  for expired in
    select * from tributary.queue_messages m
     where m.queue = claim.queue and m.visible_at <= now()
     order by m.visible_at, m.id
     limit max
     for update skip locked
  loop
    continue when expired.receipt is null or expired.deliveries < q.max_deliveries;
    expired.history := expired.history || jsonb_build_object('at', expired.visible_at, 'worker', expired.claimed_by, 'error', 'visibility timeout expired');
    update tributary.queue_messages set history = expired.history where id = expired.id;
    perform tributary.bury(expired, 'visibility timeout expired');
    if q.notify_states then
      perform tributary.job_state(claim.queue, expired.id, 'dead', expired.deliveries, 'visibility timeout expired');
    end if;
  end loop;
  if not q.notify_states then
    return query select * from tributary.claim_batch(q, worker, max, visibility);
    return;
  end if;
  for claimed_row in select * from tributary.claim_batch(q, worker, max, visibility) loop
    perform tributary.job_state(claim.queue, claimed_row.id, 'running', claimed_row.deliveries);
    return next claimed_row;
  end loop;
end $$;

/** The in-flight message a receipt names, locked; or a stale-receipt error. */
create function tributary.claimed(queue text, receipt uuid) returns tributary.queue_messages
language plpgsql as $$
declare
  m tributary.queue_messages;
begin
  perform tributary.queue_settings(queue);
  select * into m from tributary.queue_messages x
   where x.receipt = claimed.receipt and x.queue = claimed.queue
   for update;
  if not found then
    perform tributary.queue_error(
      format('receipt %s of queue %s is stale: the message was acknowledged, moved to the dead letters, or its claim expired and another worker claimed it',
        coalesce(receipt::text, 'NULL'), quote_literal(queue)),
      'tributary_queue_stale_receipt', 'claim again; keep handlers within the visibility timeout or extend() it');
  end if;
  return m;
end $$;

create function tributary.ack(queue text, receipt uuid) returns void
language plpgsql as $$
declare
  m tributary.queue_messages := tributary.claimed(queue, receipt);
begin
  delete from tributary.queue_messages where id = m.id;
  if m.key is not null then perform pg_notify('tributary_queue', queue); end if;
  if (select notify_states from tributary.queues where name = ack.queue) then
    perform tributary.job_state(ack.queue, m.id, 'succeeded', m.deliveries);
  end if;
end $$;

create function tributary.nack(queue text, receipt uuid, error text default null, delay interval default null) returns void
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
  m tributary.queue_messages := tributary.claimed(queue, receipt);
  backoff interval;
begin
  if delay is not null and delay < interval '0' then
    perform tributary.queue_error('delay must not be negative', 'tributary_queue_option');
  end if;
  m.history := m.history || jsonb_build_object('at', now(), 'worker', m.claimed_by, 'error', error);
  if m.deliveries >= q.max_deliveries then
    update tributary.queue_messages set history = m.history where id = m.id;
    perform tributary.bury(m, error);
    if q.notify_states then perform tributary.job_state(nack.queue, m.id, 'dead', m.deliveries, error); end if;
    return;
  end if;
  -- base · 2^(deliveries-1), capped, ± jitter.
  backoff := least(q.backoff_base * power(2, m.deliveries - 1), q.backoff_max)
             * (1 + q.backoff_jitter * (2 * random() - 1));
  update tributary.queue_messages
     set receipt = null, claimed_by = null, claimed_at = null, last_error = error, history = m.history,
         visible_at = now() + coalesce(delay, backoff)
   where id = m.id;
  perform pg_notify('tributary_queue', queue);
  if q.notify_states then perform tributary.job_state(nack.queue, m.id, 'failed', m.deliveries, error); end if;
end $$;

create function tributary.extend(queue text, receipt uuid, visibility interval) returns timestamptz
language plpgsql as $$
declare
  m tributary.queue_messages := tributary.claimed(queue, receipt);
  until timestamptz;
begin
  if visibility is null or visibility <= interval '0' then
    perform tributary.queue_error('visibility must be positive', 'tributary_queue_option');
  end if;
  update tributary.queue_messages set visible_at = now() + visibility where id = m.id returning visible_at into until;
  return until;
end $$;

/** Moves dead letters back into their queue as new messages (deliveries reset); returns how many. */
create function tributary.redrive(queue text, ids bigint[] default null) returns int
language plpgsql as $$
declare
  moved int;
begin
  perform tributary.queue_settings(queue);
  with gone as (
    delete from tributary.queue_dead_letters d
     where d.queue = redrive.queue and (ids is null or d.id = any (ids))
    returning d.*
  )
  insert into tributary.queue_messages (queue, key, payload, enqueued_at, visible_at, history)
  select g.queue, g.key, g.payload, g.enqueued_at, now(), g.history from gone g order by g.id;
  get diagnostics moved = row_count;
  if moved > 0 then perform pg_notify('tributary_queue', queue); end if;
  return moved;
end $$;

-- Workers (packages/client work()) register here and heartbeat, so operators
-- can see who works on which queue and how fast (tributary status).
create table tributary.queue_workers (
  worker        text not null,
  queue         text not null references tributary.queues on delete cascade,
  started_at    timestamptz not null default now(),
  heartbeat_at  timestamptz not null default now(),
  concurrency   int not null,
  in_flight     int not null default 0,
  succeeded     bigint not null default 0,
  failed        bigint not null default 0,
  primary key (queue, worker)
);

-- Cron: a schedule sends `payload` to `queue` at every tick of its cron
-- expression (5 fields: minute hour day-of-month month day-of-week, in UTC).
-- fire_schedules() sends each due tick once, whatever number of schedulers
-- call it at once: the schedule row is locked (SKIP LOCKED) and its
-- next_run_at moves past the tick in the same transaction as the send.
-- After downtime only the latest missed tick is sent (catch_up 'once'), or
-- none ('skip': only a tick less than a minute late is sent).
create table tributary.queue_schedules (
  name         text primary key,
  cron         text not null,
  queue        text not null references tributary.queues on delete cascade,
  payload      jsonb not null,
  catch_up     text not null default 'once' check (catch_up in ('once', 'skip')),
  next_run_at  timestamptz not null,
  last_run_at  timestamptz,
  created_at   timestamptz not null default now()
);
create index queue_schedules_due_idx on tributary.queue_schedules (next_run_at);

/** The values a cron field allows, or an error naming the field. */
create function tributary.cron_field(field text, what text, low int, high int) returns int[]
language plpgsql immutable as $$
declare
  part text;
  range_part text;
  step int;
  first_value int;
  last_value int;
  result int[] := '{}';
begin
  foreach part in array string_to_array(field, ',') loop
    step := 1;
    range_part := part;
    if part like '%/%' then
      range_part := split_part(part, '/', 1);
      if split_part(part, '/', 2) !~ '^[0-9]+$' or split_part(part, '/', 2)::int < 1 then
        perform tributary.queue_error(format('invalid cron %s field %s: a step is a positive number', what, quote_literal(field)), 'tributary_queue_cron');
      end if;
      step := split_part(part, '/', 2)::int;
    end if;
    if range_part = '*' then
      first_value := low; last_value := high;
    elsif range_part ~ '^[0-9]+-[0-9]+$' then
      first_value := split_part(range_part, '-', 1)::int; last_value := split_part(range_part, '-', 2)::int;
    elsif range_part ~ '^[0-9]+$' then
      first_value := range_part::int;
      last_value := case when part like '%/%' then high else first_value end;
    else
      perform tributary.queue_error(format('invalid cron %s field %s: use *, a number, a range a-b, a list a,b or a step */n', what, quote_literal(field)),
        'tributary_queue_cron');
    end if;
    if first_value < low or last_value > high or first_value > last_value then
      perform tributary.queue_error(format('invalid cron %s field %s: values must be %s to %s', what, quote_literal(field), low, high), 'tributary_queue_cron');
    end if;
    result := result || array(select generate_series(first_value, last_value, step));
  end loop;
  return result;
end $$;

/** The first tick of `cron` strictly after `after` (UTC). */
create function tributary.cron_next(cron text, after timestamptz) returns timestamptz
language plpgsql stable as $$
declare
  fields text[] := regexp_split_to_array(trim(coalesce(cron, '')), '\s+');
  minutes int[]; hours int[]; days int[]; months int[]; weekdays int[];
  day_restricted boolean; weekday_restricted boolean;
  t timestamp := date_trunc('minute', after at time zone 'UTC') + interval '1 minute';
  day date;
  h int; m int;
begin
  if array_length(fields, 1) is distinct from 5 then
    perform tributary.queue_error(format('invalid cron %s: 5 fields (minute hour day-of-month month day-of-week), e.g. ''*/5 * * * *''',
      coalesce(quote_literal(cron), 'NULL')), 'tributary_queue_cron');
  end if;
  minutes := tributary.cron_field(fields[1], 'minute', 0, 59);
  hours := tributary.cron_field(fields[2], 'hour', 0, 23);
  days := tributary.cron_field(fields[3], 'day-of-month', 1, 31);
  months := tributary.cron_field(fields[4], 'month', 1, 12);
  weekdays := array(select case when d = 7 then 0 else d end from unnest(tributary.cron_field(fields[5], 'day-of-week', 0, 7)) d);
  -- Vixie cron: when both day fields are restricted, a day matching either runs.
  day_restricted := fields[3] <> '*';
  weekday_restricted := fields[5] <> '*';
  day := t::date;
  for i in 0 .. 366 * 5 loop
    if extract(month from day)::int = any (months) and (
         case when day_restricted and weekday_restricted
                then extract(day from day)::int = any (days) or extract(dow from day)::int = any (weekdays)
              else extract(day from day)::int = any (days) and extract(dow from day)::int = any (weekdays) end) then
      foreach h in array (select array_agg(x order by x) from unnest(hours) x) loop
        foreach m in array (select array_agg(x order by x) from unnest(minutes) x) loop
          if day + make_interval(hours => h, mins => m) >= t then
            return (day + make_interval(hours => h, mins => m)) at time zone 'UTC';
          end if;
        end loop;
      end loop;
    end if;
    day := day + 1;
  end loop;
  perform tributary.queue_error(format('cron %s never fires', quote_literal(cron)), 'tributary_queue_cron');
end $$;

create function tributary.schedule(name text, cron text, queue text, payload jsonb, catch_up text default 'once') returns timestamptz
language plpgsql as $$
#variable_conflict use_column
declare
  next_at timestamptz;
begin
  if name is null or name !~ '^[A-Za-z0-9._:-]{1,200}$' then
    perform tributary.queue_error(format('invalid schedule name %s: 1 to 200 characters of A-Z a-z 0-9 . _ : -', coalesce(quote_literal(name), 'NULL')),
      'tributary_queue_name');
  end if;
  perform tributary.queue_settings(schedule.queue);
  if payload is null then
    perform tributary.queue_error('payload must not be SQL NULL', 'tributary_queue_payload');
  end if;
  if catch_up is null or catch_up not in ('once', 'skip') then
    perform tributary.queue_error('catch_up is once (send the latest missed tick after downtime) or skip', 'tributary_queue_option');
  end if;
  next_at := tributary.cron_next(schedule.cron, now());
  insert into tributary.queue_schedules (name, cron, queue, payload, catch_up, next_run_at)
  values (schedule.name, schedule.cron, schedule.queue, schedule.payload, schedule.catch_up, next_at)
  on conflict (name) do update
     set cron = excluded.cron, queue = excluded.queue, payload = excluded.payload,
         catch_up = excluded.catch_up, next_run_at = excluded.next_run_at;
  return next_at;
end $$;

create function tributary.unschedule(name text) returns boolean
language sql as $$
  with gone as (delete from tributary.queue_schedules s where s.name = unschedule.name returning 1)
  select exists (select 1 from gone);
$$;

/**
 * Sends every due tick once (see the table's comment); returns how many were
 * sent. The payload gets the tick's time as "tick" if it is an object.
 */
create function tributary.fire_schedules() returns int
language plpgsql as $$
declare
  s tributary.queue_schedules;
  fired int := 0;
  tick timestamptz;
  candidate timestamptz;
  window_size interval;
begin
  for s in
    select * from tributary.queue_schedules where next_run_at <= now() order by next_run_at for update skip locked
  loop
    -- The latest tick due: after downtime, one send for everything missed.
    -- Look back in doubling windows for a tick, then step forward: a few
    -- cron_next calls however long the downtime was.
    tick := s.next_run_at;
    window_size := interval '1 minute';
    while now() - window_size > s.next_run_at loop
      candidate := tributary.cron_next(s.cron, now() - window_size);
      if candidate <= now() then
        tick := candidate;
        exit;
      end if;
      window_size := window_size * 2;
    end loop;
    while tributary.cron_next(s.cron, tick) <= now() loop
      tick := tributary.cron_next(s.cron, tick);
    end loop;
    -- skip: only a tick that is due now (within a minute), never a missed one.
    if s.catch_up = 'once' or now() - tick < interval '1 minute' then
      perform tributary.send(s.queue,
        case when jsonb_typeof(s.payload) = 'object' then s.payload || jsonb_build_object('tick', tick) else s.payload end,
        jsonb_build_object('dedupe_key', 'schedule:' || s.name || '@' || tick));
      fired := fired + 1;
    end if;
    update tributary.queue_schedules
       set last_run_at = tick, next_run_at = tributary.cron_next(s.cron, greatest(tick, now()))
     where name = s.name;
  end loop;
  return fired;
end $$;
