-- send_batch: many messages in one set-based statement, each with send()'s
-- options, for producers that enqueue in bulk (pg-boss's insert(), graphile-
-- worker's add_jobs). One call is all or nothing, as one send is: a message
-- that breaks a rule raises for the whole call, naming it ("message 7 of
-- 1000: ..."), and nothing of the call is queued.
--
--   select tributary.send_batch('emails', '[{"payload": {"to": "a@example.com"}},
--                                           {"payload": 2, "key": "k", "delay": 30}]');
--
-- Each element is {"payload": <any JSON>, and send's options beside it:
-- "key", "dedupe_key", "delay", "run_at", "headers"}. It returns the ids in
-- the array's order; a message whose dedupe_key is pending (or that repeats
-- an earlier element's) gets that message's id, as send() returns it.
--
-- The rules are send's (0005, 0014). The cheap ones (shape, payload size,
-- keys, FIFO) are checked in one pass over the array; delay, run_at and
-- headers call send's own option checks, only for the elements that have
-- them, before anything is written. When a rule is broken, the call finds
-- the first element that breaks one and raises send's error with its
-- position. send() now takes its delivery time from the same
-- helper, so the two cannot drift apart.

/** send()'s delivery time from its delay or run_at option (now() when neither). */
create function tributary.option_visible_at(options jsonb) returns timestamptz
language plpgsql stable as $$
declare
  run_at timestamptz;
  allowed constant text := 'a timestamp (ISO 8601 text, e.g. ''2030-01-31T12:00:00Z'')';
begin
  if options ? 'delay' and options -> 'delay' <> 'null'::jsonb and options ? 'run_at' and options -> 'run_at' <> 'null'::jsonb then
    perform tributary.queue_error('give delay or run_at, not both', 'tributary_queue_option');
  end if;
  if options ? 'delay' and options -> 'delay' <> 'null'::jsonb then
    return now() + tributary.option_interval(options, 'delay', interval '0');
  end if;
  if not options ? 'run_at' or options -> 'run_at' = 'null'::jsonb then
    return now();
  end if;
  if jsonb_typeof(options -> 'run_at') <> 'string' then
    perform tributary.queue_option_error('run_at', options -> 'run_at', allowed);
  end if;
  begin
    run_at := (options ->> 'run_at')::timestamptz;
  exception when others then
    perform tributary.queue_option_error('run_at', options -> 'run_at', allowed);
  end;
  -- infinity would never be delivered; -infinity and far dates are mistakes, not schedules.
  if not isfinite(run_at) or run_at > now() + interval '100 years' or run_at < now() - interval '100 years' then
    perform tributary.queue_option_error('run_at', options -> 'run_at', 'a finite timestamp within 100 years of now');
  end if;
  return greatest(run_at, now());
end $$;
revoke all on function tributary.option_visible_at(jsonb) from public;
grant execute on function tributary.option_visible_at(jsonb) to tributary_writer, tributary_worker, tributary_admin;

/** 0014's send, its delay and run_at now read by option_visible_at (the same rules and errors). */
create or replace function tributary.send(queue text, payload jsonb, options jsonb default '{}') returns bigint
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  visible timestamptz;
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
  visible := tributary.option_visible_at(options);
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

/**
 * One element of send_batch checked alone, as send checks its options: the
 * error of the first rule it breaks (and that rule), or nulls. The slow
 * path: send_batch calls it only to name the element a set-based check
 * refused.
 */
create function tributary.batch_message_problem(message jsonb, q tributary.queues, max_bytes int, out problem text, out rule text, out hint text)
language plpgsql stable as $$
declare
  options jsonb;
  message_key text;
begin
  if jsonb_typeof(message) is distinct from 'object' then
    problem := format('is %s, not an object {"payload": …} with send''s options beside it', left(coalesce(message::text, 'NULL'), 200));
    rule := 'tributary_queue_payload';
    return;
  end if;
  if not message ? 'payload' then
    problem := 'has no "payload" (any JSON value; null for a JSON null)';
    rule := 'tributary_queue_payload';
    return;
  end if;
  if octet_length((message -> 'payload')::text) > max_bytes then
    problem := format('payload is %s bytes, over the limit of %s bytes', octet_length((message -> 'payload')::text), max_bytes);
    rule := 'tributary_queue_payload';
    hint := 'raise tributary.max_data_bytes, or send a reference to the data instead';
    return;
  end if;
  options := message - 'payload';
  begin
    -- In send's order, so that a message breaking two rules gets send's error.
    perform tributary.check_option_keys(options, array['delay', 'run_at', 'key', 'dedupe_key', 'headers'], 'send option');
    options := jsonb_strip_nulls(options);
    perform tributary.option_visible_at(options);
    if options ? 'headers' then perform tributary.option_headers(options -> 'headers'); end if;
    message_key := tributary.option_key(options, 'key');
    perform tributary.option_key(options, 'dedupe_key');
    if message_key is null and q.fifo then
      perform tributary.queue_error(format('queue %s is FIFO: give every message a key (its FIFO group)', quote_literal(q.name)),
        'tributary_queue_option');
    end if;
  exception when sqlstate '22023' then
    get stacked diagnostics problem = message_text, rule = constraint_name, hint = pg_exception_hint;
  end;
end $$;
revoke all on function tributary.batch_message_problem(jsonb, tributary.queues, int) from public;
grant execute on function tributary.batch_message_problem(jsonb, tributary.queues, int) to tributary_writer, tributary_worker, tributary_admin;

create function tributary.send_batch(queue text, messages jsonb) returns bigint[]
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  max_bytes constant int := tributary.max_data_bytes();
  known constant text[] := array['payload', 'delay', 'run_at', 'key', 'dedupe_key', 'headers'];
  total int;
  bad_n int;
  any_dedupe boolean;
  any_options boolean;
  found_problem record;
  ids bigint[];
  new_ids bigint[];
  plain_ids bigint[];
  new_id bigint;
begin
  if messages is null or jsonb_typeof(messages) <> 'array' then
    perform tributary.queue_error(format('send_batch takes a JSON array of messages, each {"payload": …} with send''s options beside it, not %s',
      left(coalesce(messages::text, 'NULL'), 200)), 'tributary_queue_payload');
  end if;
  total := jsonb_array_length(messages);
  if total = 0 then return '{}'; end if;

  -- The cheap rules in one pass, and whether any element has a dedupe key,
  -- or delay, run_at or headers (checked next).
  select min(m.n) filter (where jsonb_typeof(m.message) <> 'object'
                             or not m.message ? 'payload'
                             or m.message - known <> '{}'::jsonb
                             or octet_length((m.message -> 'payload')::text) > max_bytes
                             or jsonb_typeof(m.message -> 'key') not in ('string', 'null')
                             or m.message ->> 'key' = '' or octet_length(m.message ->> 'key') > 1024
                             or jsonb_typeof(m.message -> 'dedupe_key') not in ('string', 'null')
                             or m.message ->> 'dedupe_key' = '' or octet_length(m.message ->> 'dedupe_key') > 1024
                             or (q.fifo and m.message ->> 'key' is null)),
         coalesce(bool_or(m.message ->> 'dedupe_key' is not null), false),
         coalesce(bool_or(m.message ?| array['delay', 'run_at', 'headers']), false)
    into bad_n, any_dedupe, any_options
    from jsonb_array_elements(messages) with ordinality as m(message, n);

  -- delay, run_at and headers by send's own checks, before anything is
  -- written: an error is caught here to name the element, in a
  -- subtransaction that writes nothing (so it takes no transaction id, and a
  -- caller's transaction of many batches does not fill PostgreSQL's cache of
  -- subtransactions).
  if bad_n is null and any_options then
    begin
      perform tributary.option_visible_at(m.message), tributary.option_headers(jsonb_strip_nulls(m.message -> 'headers'))
         from jsonb_array_elements(messages) as m(message)
        where m.message ?| array['delay', 'run_at', 'headers'];
    exception when sqlstate '22023' then
      bad_n := 0;
    end;
  end if;

  if bad_n is not null then
    -- Refused: the first element that breaks a rule, named with the rule's own error.
    select m.n, p.problem, p.rule, p.hint into found_problem
      from jsonb_array_elements(messages) with ordinality as m(message, n)
     cross join lateral tributary.batch_message_problem(m.message, q, max_bytes) p
     where p.problem is not null
     order by m.n
     limit 1;
    if found_problem is null then
      raise exception 'send_batch refused the batch but found no element that breaks a rule: report this as a bug' using errcode = 'XX000';
    end if;
    perform tributary.queue_error(format('send_batch message %s of %s: %s', found_problem.n, total, found_problem.problem), found_problem.rule,
      nullif(found_problem.hint, ''));
  end if;

  -- In array order: identity values are drawn as the ordered rows are
  -- inserted, so the new ids ascend with the array (a FIFO key's messages
  -- keep their order, invariant 10). A dedupe key already pending, or
  -- repeated in the array, inserts nothing. (Two batches inserting the same
  -- dedupe keys at once in opposite orders can deadlock, as any two
  -- transactions inserting the same unique keys can: PostgreSQL rolls one
  -- back with 40P01, to be retried.)
  with input as (
    select m.n, m.message ->> 'key' as key, m.message ->> 'dedupe_key' as dedupe_key, m.message -> 'payload' as payload,
           case when m.message ?| array['delay', 'run_at'] then tributary.option_visible_at(m.message) else now() end as visible_at,
           case when m.message ? 'headers' then tributary.option_headers(jsonb_strip_nulls(m.message -> 'headers')) else '{}'::jsonb end as headers
      from jsonb_array_elements(messages) with ordinality as m(message, n)
  ), inserted as (
    insert into tributary.queue_messages (queue, key, dedupe_key, payload, visible_at, headers)
    select send_batch.queue, i.key, i.dedupe_key, i.payload, i.visible_at, i.headers
      from input i
     order by i.n
    on conflict (queue, dedupe_key) where dedupe_key is not null do nothing
    returning id, dedupe_key
  )
  select coalesce(array_agg(inserted.id order by inserted.id), '{}'),
         coalesce(array_agg(inserted.id order by inserted.id) filter (where inserted.dedupe_key is null), '{}')
    into new_ids, plain_ids
    from inserted;

  if not any_dedupe then
    ids := new_ids;
  else
    -- The ids in array order: an element without a dedupe key has the next
    -- new id of those without one (they were inserted in array order); one
    -- with a dedupe key has the id of the message pending under it, whether
    -- this call or an earlier one queued it.
    with input as (
      select m.n, m.message ->> 'dedupe_key' as dedupe_key,
             row_number() over (partition by m.message ->> 'dedupe_key' is null order by m.n) as nth
        from jsonb_array_elements(messages) with ordinality as m(message, n)
    )
    select array_agg(case when i.dedupe_key is null then plain_ids[i.nth]
                          else (select p.id from tributary.queue_messages p where p.queue = send_batch.queue and p.dedupe_key = i.dedupe_key) end
                     order by i.n)
      into ids
      from input i;
  end if;

  if q.notify_states then
    foreach new_id in array new_ids loop
      perform tributary.job_state(send_batch.queue, new_id, 'queued', 0);
    end loop;
  end if;
  perform pg_notify('tributary_queue', queue);
  return ids;
end $$;

comment on function tributary.send_batch(text, jsonb) is
  'Sends a JSON array of messages, each {"payload": …} with send''s options (key, dedupe_key, delay, run_at, headers) beside it, '
  'in one statement; returns their ids in array order. All or nothing: a message that breaks a rule raises, naming it.';

revoke all on function tributary.send_batch(text, jsonb) from public;
grant execute on function tributary.send_batch(text, jsonb) to tributary_writer, tributary_admin;
