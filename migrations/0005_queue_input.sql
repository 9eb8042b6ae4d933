-- Queue input: every option is checked for its JSON type and range, and a
-- claim's visibility counts from when the claim takes effect.
--
-- 0003 cast options with ::int, ::boolean and ::float8, so a bad value was a
-- raw cast error (22P02) that named neither the option nor what it allows;
-- `"backoff": "fast"`, unknown backoff keys and non-string streams or keys
-- were silently accepted; `run_at: "infinity"` was stored and never
-- delivered; a cron step too large for an int was an integer-range error.
-- Now every bad input raises tributary.queue_error (SQLSTATE 22023, the
-- constraint tributary_queue_option or tributary_queue_cron) with a message
-- of the form "option NAME: VALUE is not WHAT IS ALLOWED". JSON null means
-- "the default" for every option, as before.
--
-- Durations (visibility_timeout, backoff.base, backoff.max, delay) are
-- finite and at most 100 years: anything larger would overflow a timestamp
-- when added to now() at claim, nack or send time, failing the queue there
-- instead of here. Keys and dedupe keys are at most 1024 bytes, well under
-- btree's row limit for the key and dedupe indexes.
--
-- Visibility: claim_batch counted a claim's expiry from now(), the start of
-- the claiming transaction. A FIFO claim first waits for the queue's
-- advisory lock, so under contention the worker got less than its visibility
-- timeout (2 s cut by 0.45 s was seen). The claim now reads the database's
-- clock_timestamp() once it holds the lock and counts from that, for picking
-- and for the expiry alike; extend and nack count from clock_timestamp() at
-- their update. Still the database's clock (invariant 10), never a client's.
-- Functions keep their 0003/0004 signatures and run with the caller's rights.

/** The error for a bad option value: names the option, the value and what is allowed. */
create function tributary.queue_option_error(option text, value jsonb, allowed text) returns void
language plpgsql as $$
begin
  perform tributary.queue_error(format('option %s: %s is not %s', option, left(coalesce(value::text, 'NULL'), 200), allowed),
    'tributary_queue_option');
end $$;

create or replace function tributary.option_interval(options jsonb, name text, fallback interval) returns interval
language plpgsql immutable as $$
declare
  raw jsonb := options -> name;
  value interval;
  allowed constant text := 'a duration (seconds, e.g. 30, or an interval, e.g. ''5 minutes''; at most 100 years)';
begin
  if raw is null or raw = 'null'::jsonb then return fallback; end if;
  if jsonb_typeof(raw) not in ('number', 'string') then
    perform tributary.queue_option_error(name, raw, allowed);
  end if;
  begin
    value := case jsonb_typeof(raw)
               when 'number' then (raw #>> '{}')::float8 * interval '1 second'
               else (raw #>> '{}')::interval end;
  exception when others then
    perform tributary.queue_option_error(name, raw, allowed);
  end;
  -- 'infinity' is an interval from PostgreSQL 17 on: no claim or delay ends there.
  if not isfinite(value) or value > interval '100 years' or value < interval '-100 years' then
    perform tributary.queue_option_error(name, raw, allowed);
  end if;
  if value < interval '0' then
    perform tributary.queue_error(format('option %s must not be negative (got %s)', name, raw), 'tributary_queue_option');
  end if;
  return value;
end $$;

/** A JSON boolean option, or `fallback` when absent or null. */
create function tributary.option_boolean(options jsonb, name text, fallback boolean, label text default null) returns boolean
language plpgsql immutable as $$
declare
  raw jsonb := options -> name;
begin
  if raw is null or raw = 'null'::jsonb then return fallback; end if;
  if jsonb_typeof(raw) <> 'boolean' then
    perform tributary.queue_option_error(coalesce(label, name), raw, 'a boolean (true or false)');
  end if;
  return raw::text::boolean;
end $$;

/** Unknown keys of an options object: an error naming the first one and the known ones. */
create function tributary.check_option_keys(options jsonb, known text[], what text) returns void
language plpgsql immutable as $$
declare
  unknown text;
begin
  select k into unknown from jsonb_object_keys(options) k where k <> all (known) order by k limit 1;
  if unknown is not null then
    perform tributary.queue_error(format('unknown %s %s: the options are %s', what, quote_literal(unknown), array_to_string(known, ', ')),
      'tributary_queue_option');
  end if;
end $$;

create or replace function tributary.create_queue(name text, options jsonb default '{}') returns void
language plpgsql as $$
declare
  q tributary.queues;
  backoff jsonb;
  raw jsonb;
begin
  perform tributary.validate_queue_name(name);
  if options is null or jsonb_typeof(options) <> 'object' then
    perform tributary.queue_error(format('queue options must be a JSON object, not %s', left(coalesce(options::text, 'NULL'), 200)),
      'tributary_queue_option');
  end if;
  perform tributary.check_option_keys(options,
    array['visibility_timeout', 'max_deliveries', 'backoff', 'fifo', 'stream', 'notify_states'], 'queue option');
  options := jsonb_strip_nulls(options);

  backoff := coalesce(options -> 'backoff', '{}');
  if jsonb_typeof(backoff) <> 'object' then
    perform tributary.queue_option_error('backoff', backoff, 'an object: {"base": seconds, "max": seconds, "jitter": 0 to 1}');
  end if;
  perform tributary.check_option_keys(backoff, array['base', 'max', 'jitter'], 'backoff option');
  backoff := jsonb_strip_nulls(backoff);

  q.name := name;
  q.visibility_timeout := tributary.option_interval(options, 'visibility_timeout', interval '30 seconds');
  if q.visibility_timeout <= interval '0' then
    perform tributary.queue_error('option visibility_timeout must be positive', 'tributary_queue_option');
  end if;

  raw := options -> 'max_deliveries';
  if raw is null then
    q.max_deliveries := 5;
  elsif jsonb_typeof(raw) <> 'number' or raw::text::numeric <> trunc(raw::text::numeric)
        or raw::text::numeric < 1 or raw::text::numeric > 1000000 then
    perform tributary.queue_option_error('max_deliveries', raw, 'a whole number from 1 to 1000000');
  else
    q.max_deliveries := raw::text::numeric::int;
  end if;

  q.backoff_base := tributary.option_interval(backoff, 'base', interval '1 second');
  q.backoff_max := tributary.option_interval(backoff, 'max', interval '5 minutes');
  raw := backoff -> 'jitter';
  if raw is null or raw = 'null'::jsonb then
    q.backoff_jitter := 0.2;
  elsif jsonb_typeof(raw) <> 'number' or raw::text::numeric < 0 or raw::text::numeric > 1 then
    perform tributary.queue_option_error('backoff.jitter', raw, 'a number from 0 to 1 (the share of the backoff added or taken at random)');
  else
    q.backoff_jitter := raw::text::float8;
  end if;

  q.fifo := tributary.option_boolean(options, 'fifo', false);
  q.notify_states := tributary.option_boolean(options, 'notify_states', false);

  raw := options -> 'stream';
  if raw is not null then
    if jsonb_typeof(raw) <> 'string' then
      perform tributary.queue_option_error('stream', raw, 'a stream name (a string)');
    end if;
    -- Fed by a stream: every event becomes a message (a feeder runs in work()).
    q.stream := raw #>> '{}';
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

/** A send option that names a key (key, dedupe_key): a non-empty string of at most 1024 bytes. */
create function tributary.option_key(options jsonb, name text) returns text
language plpgsql immutable as $$
declare
  raw jsonb := options -> name;
begin
  if raw is null then return null; end if;
  if jsonb_typeof(raw) <> 'string' or raw #>> '{}' = '' or octet_length(raw #>> '{}') > 1024 then
    perform tributary.queue_option_error(name, raw, 'a non-empty string of at most 1024 bytes');
  end if;
  return raw #>> '{}';
end $$;

create or replace function tributary.send(queue text, payload jsonb, options jsonb default '{}') returns bigint
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  visible timestamptz := now();
  run_at timestamptz;
  message_key text;
  dedupe text;
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
    perform tributary.queue_error(format('send options must be a JSON object, not %s', left(options::text, 200)), 'tributary_queue_option');
  end if;
  perform tributary.check_option_keys(options, array['delay', 'run_at', 'key', 'dedupe_key'], 'send option');
  options := jsonb_strip_nulls(options);
  if options ? 'delay' and options ? 'run_at' then
    perform tributary.queue_error('give delay or run_at, not both', 'tributary_queue_option');
  end if;
  if options ? 'delay' then
    visible := now() + tributary.option_interval(options, 'delay', interval '0');
  elsif options ? 'run_at' then
    if jsonb_typeof(options -> 'run_at') <> 'string' then
      perform tributary.queue_option_error('run_at', options -> 'run_at', 'a timestamp (ISO 8601 text, e.g. ''2030-01-31T12:00:00Z'')');
    end if;
    begin
      run_at := (options ->> 'run_at')::timestamptz;
    exception when others then
      perform tributary.queue_option_error('run_at', options -> 'run_at', 'a timestamp (ISO 8601 text, e.g. ''2030-01-31T12:00:00Z'')');
    end;
    -- infinity would never be delivered; -infinity and far dates are mistakes, not schedules.
    if not isfinite(run_at) or run_at > now() + interval '100 years' or run_at < now() - interval '100 years' then
      perform tributary.queue_option_error('run_at', options -> 'run_at', 'a finite timestamp within 100 years of now');
    end if;
    visible := greatest(run_at, now());
  end if;
  message_key := tributary.option_key(options, 'key');
  dedupe := tributary.option_key(options, 'dedupe_key');
  if q.fifo and message_key is null then
    perform tributary.queue_error(format('queue %s is FIFO: give every message a key (its FIFO group)', quote_literal(queue)),
      'tributary_queue_option');
  end if;
  if dedupe is not null then
    select id into new_id from tributary.queue_messages m
     where m.queue = send.queue and m.dedupe_key = dedupe;
    if found then return new_id; end if;
  end if;
  insert into tributary.queue_messages (queue, key, dedupe_key, payload, visible_at)
  values (send.queue, message_key, dedupe, send.payload, visible)
  on conflict (queue, dedupe_key) where dedupe_key is not null do nothing
  returning id into new_id;
  if new_id is null then
    -- A concurrent send with the same dedupe key won.
    select id into new_id from tributary.queue_messages m
     where m.queue = send.queue and m.dedupe_key = dedupe;
  elsif q.notify_states then
    perform tributary.job_state(send.queue, new_id, 'queued', 0);
  end if;
  perform pg_notify('tributary_queue', queue);
  return new_id;
end $$;

/**
 * claim()'s one statement (see 0004), timed from when the claim takes
 * effect: `claim_time` is read after claim() holds the FIFO lock, so a claim that
 * waited for it still gets its whole visibility timeout.
 */
create or replace function tributary.claim_batch(q tributary.queues, worker text, max int, visibility interval)
returns setof tributary.claimed_message
language plpgsql as $$
declare
  claim_time constant timestamptz := clock_timestamp();
begin
  return query
  with picked as (
    select m.id, m.deliveries >= q.max_deliveries as exhausted
      from tributary.queue_messages m
     where m.queue = q.name and m.visible_at <= claim_time
       and (m.locked_until is null or m.locked_until <= claim_time)
       and (not q.fifo or (
             -- the head of its key, and no message of its key in flight
             not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.id < m.id)
         and not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.locked_until > claim_time)))
     order by m.visible_at, m.id
     for update skip locked
     limit max
  ), buried as (
    delete from tributary.queue_messages m using picked
     where m.id = picked.id and picked.exhausted
    returning m.*
  ), dead as (
    insert into tributary.queue_dead_letters (id, queue, key, payload, enqueued_at, deliveries, last_error, history)
    select b.id, b.queue, b.key, b.payload, b.enqueued_at, b.deliveries, 'visibility timeout expired',
           b.history || jsonb_build_object('at', b.locked_until, 'worker', b.claimed_by, 'error', 'visibility timeout expired')
      from buried b
    returning id, payload, key, deliveries, enqueued_at
  ), claimed as (
    update tributary.queue_messages m
       set receipt = tributary.new_receipt(m.id),
           deliveries = m.deliveries + 1,
           locked_until = claim_time + coalesce(visibility, q.visibility_timeout),
           claimed_by = worker,
           claimed_at = claim_time,
           -- A claim that expired counts as a failed delivery in the history.
           history = case when m.locked_until is not null
                          then m.history || jsonb_build_object('at', m.locked_until, 'worker', m.claimed_by, 'error', 'visibility timeout expired')
                          else m.history end
      from picked
     where m.id = picked.id and not picked.exhausted
    returning m.id, m.receipt, m.payload, m.key, m.deliveries, m.enqueued_at, m.locked_until
  )
  select * from claimed
  union all
  select d.id, null::uuid, d.payload, d.key, d.deliveries, d.enqueued_at, null::timestamptz from dead d;
end $$;

create or replace function tributary.nack(queue text, receipt uuid, error text default null, delay interval default null) returns void
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
  m tributary.queue_messages := tributary.claimed(queue, receipt);
  backoff interval;
  nacked_at timestamptz;
begin
  if delay is not null and (delay < interval '0' or not isfinite(delay) or delay > interval '100 years') then
    perform tributary.queue_error(format('delay must be a finite duration from 0 to 100 years (got %s)', delay), 'tributary_queue_option');
  end if;
  -- After claimed() locked the row: the backoff counts from now, not from the transaction's start.
  nacked_at := clock_timestamp();
  m.history := m.history || jsonb_build_object('at', nacked_at, 'worker', m.claimed_by, 'error', error);
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
     set receipt = null, locked_until = null, claimed_by = null, claimed_at = null, last_error = error, history = m.history,
         visible_at = nacked_at + coalesce(delay, backoff)
   where id = m.id;
  perform pg_notify('tributary_queue', queue);
  if q.notify_states then perform tributary.job_state(nack.queue, m.id, 'failed', m.deliveries, error); end if;
end $$;

create or replace function tributary.extend(queue text, receipt uuid, visibility interval) returns timestamptz
language plpgsql as $$
declare
  until timestamptz;
begin
  if visibility is null or visibility <= interval '0' or not isfinite(visibility) or visibility > interval '100 years' then
    perform tributary.queue_error(format('visibility must be a positive finite duration of at most 100 years (got %s)', coalesce(visibility::text, 'NULL')),
      'tributary_queue_option');
  end if;
  -- clock_timestamp() per row, once the row is ours: a wait for its lock does not shorten the extension.
  update tributary.queue_messages x set locked_until = clock_timestamp() + visibility
   where x.id = tributary.receipt_message_id(extend.receipt) and x.receipt = extend.receipt and x.queue = extend.queue
  returning x.locked_until into until;
  if not found then
    perform tributary.queue_settings(queue);
    perform tributary.stale_receipt(queue, receipt);
  end if;
  return until;
end $$;

/** The values a cron field allows, or an error naming the field and its range. */
create or replace function tributary.cron_field(field text, what text, low int, high int) returns int[]
language plpgsql immutable as $$
declare
  part text;
  range_part text;
  step_text text;
  step int;
  first_value int;
  last_value int;
  result int[] := '{}';
  span constant int := high - low + 1;
begin
  foreach part in array string_to_array(field, ',') loop
    step := 1;
    range_part := part;
    if part like '%/%' then
      range_part := split_part(part, '/', 1);
      step_text := split_part(part, '/', 2);
      -- At most 9 digits before the cast: a longer number is out of range, not an integer overflow.
      if step_text !~ '^[0-9]{1,9}$' or step_text::int < 1 or step_text::int > span then
        perform tributary.queue_error(format('invalid cron %s field %s: a step is a positive number, at most %s', what, quote_literal(field), span),
          'tributary_queue_cron');
      end if;
      step := step_text::int;
    end if;
    if range_part = '*' then
      first_value := low; last_value := high;
    elsif range_part ~ '^[0-9]{1,9}-[0-9]{1,9}$' then
      first_value := split_part(range_part, '-', 1)::int; last_value := split_part(range_part, '-', 2)::int;
    elsif range_part ~ '^[0-9]{1,9}$' then
      first_value := range_part::int;
      last_value := case when part like '%/%' then high else first_value end;
    elsif range_part ~ '^[0-9]+(-[0-9]+)?$' then
      perform tributary.queue_error(format('invalid cron %s field %s: values must be %s to %s', what, quote_literal(field), low, high), 'tributary_queue_cron');
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
