-- Queue messages carry headers, as SQS messages carry attributes: a JSON
-- object of text values, set with send()'s `headers` option and handed to
-- the worker with the message. The TypeScript client's send() puts the
-- active W3C trace context there (`traceparent`, `tracestate`), so a worker's
-- span links the sender's (docs/ARCHITECTURE.md "Traces"). A stream-fed
-- message needs none: its payload is the whole event, headers included.
--
-- Dead letters keep a message's headers, and a redrive gives them back.

alter table tributary.queue_messages add column headers jsonb not null default '{}';
alter table tributary.queue_dead_letters add column headers jsonb not null default '{}';
alter type tributary.claimed_message add attribute headers jsonb;

-- Writers send (insert) and workers feed and redrive: the new column too (0007's model).
grant insert (headers) on tributary.queue_messages to tributary_writer, tributary_worker;

/** send()'s `headers` option, checked: a JSON object of text values, at most 64 of them, 8 KiB in all. */
create function tributary.option_headers(headers jsonb) returns jsonb
language plpgsql immutable as $$
declare
  bad text;
begin
  if jsonb_typeof(headers) = 'null' then
    return '{}';
  end if;
  if jsonb_typeof(headers) <> 'object' then
    perform tributary.queue_option_error('headers', headers, 'a JSON object of text values, e.g. {"traceparent": "00-…-…-01"}');
  end if;
  select h.key into bad from jsonb_each(headers) h where jsonb_typeof(h.value) <> 'string' limit 1;
  if bad is not null then
    perform tributary.queue_error(format('send option headers: header %s is %s, not text (give every header a string value)',
      quote_literal(bad), jsonb_typeof(headers -> bad)), 'tributary_queue_option');
  end if;
  if (select count(*) from jsonb_object_keys(headers)) > 64 or octet_length(headers::text) > 8192 then
    perform tributary.queue_error(format('send option headers: %s headers, %s bytes: over the limit of 64 headers and 8192 bytes (keep bulky data in the payload)',
      (select count(*) from jsonb_object_keys(headers)), octet_length(headers::text)), 'tributary_queue_option');
  end if;
  return headers;
end $$;
revoke all on function tributary.option_headers(jsonb) from public;
grant execute on function tributary.option_headers(jsonb) to tributary_writer, tributary_worker, tributary_admin;

create or replace function tributary.send(queue text, payload jsonb, options jsonb default '{}') returns bigint
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  visible timestamptz := now();
  run_at timestamptz;
  message_key text;
  dedupe text;
  message_headers jsonb := '{}';
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
  perform tributary.check_option_keys(options, array['delay', 'run_at', 'key', 'dedupe_key', 'headers'], 'send option');
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
  if options ? 'headers' then
    message_headers := tributary.option_headers(options -> 'headers');
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
  insert into tributary.queue_messages (queue, key, dedupe_key, payload, visible_at, headers)
  values (send.queue, message_key, dedupe, send.payload, visible, message_headers)
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

/** claim()'s one statement (0005), now handing out each message's headers; a buried message's go to its dead letter. */
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
    insert into tributary.queue_dead_letters (id, queue, key, payload, enqueued_at, deliveries, last_error, history, headers)
    select b.id, b.queue, b.key, b.payload, b.enqueued_at, b.deliveries, 'visibility timeout expired',
           b.history || jsonb_build_object('at', b.locked_until, 'worker', b.claimed_by, 'error', 'visibility timeout expired')
           , b.headers
      from buried b
    returning id, payload, key, deliveries, enqueued_at, headers
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
    returning m.id, m.receipt, m.payload, m.key, m.deliveries, m.enqueued_at, m.locked_until, m.headers
  )
  select * from claimed
  union all
  select d.id, null::uuid, d.payload, d.key, d.deliveries, d.enqueued_at, null::timestamptz, d.headers from dead d;
end $$;

/** Moves a message to the dead letters (its last delivery failed or expired), headers and all. */
create or replace function tributary.bury(message tributary.queue_messages, error text) returns void
language sql as $$
  with gone as (delete from tributary.queue_messages where id = message.id returning *)
  insert into tributary.queue_dead_letters (id, queue, key, payload, enqueued_at, deliveries, last_error, history, headers)
  select id, queue, key, payload, enqueued_at, deliveries, coalesce(error, last_error), history, headers from gone;
$$;

create or replace function tributary.redrive(queue text, ids bigint[] default null) returns int
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
  insert into tributary.queue_messages (queue, key, payload, enqueued_at, visible_at, history, headers)
  select g.queue, g.key, g.payload, g.enqueued_at, now(), g.history, g.headers from gone g order by g.id;
  get diagnostics moved = row_count;
  if moved > 0 then perform pg_notify('tributary_queue', queue); end if;
  return moved;
end $$;
