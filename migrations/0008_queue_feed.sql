-- Stream-fed queues go through the queue's own rules: send_many, a set-based
-- send, and the feeder (packages/client queue-feeder.ts) sends with it.
--
-- Until now the feeder inserted into tributary.queue_messages itself. So a
-- fed message skipped what send checks (the payload limit, max_data_bytes of
-- tributary.limits; the key) and a queue created with notify_states never
-- announced it as `queued` on tributary_jobs, as it does every sent message.
--
-- send_many(queue, payloads[], keys[], options) sends many messages in one
-- statement, in array order (ids ascend with it), each checked as send
-- checks it: not SQL NULL, at most max_data_bytes as jsonb text, a key (when
-- given) non-empty and at most 1024 bytes, a key on every message of a FIFO
-- queue. Each sent message is `queued` on a notify_states queue; one NOTIFY
-- tributary_queue wakes the workers. What happens to a message that breaks
-- a rule is the caller's choice (option `invalid`):
--   'raise' (default): nothing is sent; the error is send's (SQLSTATE 22023,
--     the same constraint name), naming the message's position.
--   'dead_letter': the others are sent; it goes to the queue's dead letters
--     at once (deliveries 0, last_error "not queued: <rule broken> (<rule>)"),
--     announced `dead` on a notify_states queue, and its row of the result
--     carries the error. The feeder uses this: an event the queue refuses
--     must neither stop the stream's partition (the feeder's consumer group
--     would retry it, then pause there) nor vanish (docs/ARCHITECTURE.md
--     invariant 13, applied to the queue: set aside, visible, the rest goes
--     on). The event is still in its stream; once the rule allows it (an
--     admin raised the limit), redrive() puts the dead letter back.
--
-- Privileges (the model of 0007). send_many runs with the caller's rights
-- like send: row-level security asks for a send grant on the queue for the
-- messages, and a work grant for dead letters (a feeder runs in a worker of
-- its queue, so it has both). A dead letter that never was a message takes
-- its id from the messages' identity sequence (ids are unique across the two
-- tables: bury() and redrive() move rows between them), so the roles that may
-- write dead letters (workers, admins) may draw from it. EXECUTE: writers
-- (send's role), workers (the feeder), admins; not PUBLIC.

create function tributary.send_many(queue text, payloads jsonb[], keys text[] default null, options jsonb default '{}')
returns table (id bigint, error text)
language plpgsql as $$
#variable_conflict use_column
declare
  q tributary.queues := tributary.queue_settings(queue);
  total constant int := coalesce(cardinality(payloads), 0);
  max_bytes constant int := tributary.max_data_bytes();
  dead_letter boolean := false;
  raw jsonb;
  null_at int;
  bad_n int[];
  bad_rule text[];
  bad_problem text[];
  sent_ids bigint[];
  dead_ids bigint[];
  sent_id bigint;
  next_sent int := 1;
  next_bad int := 1;
begin
  options := coalesce(options, '{}');
  if jsonb_typeof(options) <> 'object' then
    perform tributary.queue_error(format('send_many options must be a JSON object, not %s', left(options::text, 200)), 'tributary_queue_option');
  end if;
  perform tributary.check_option_keys(options, array['invalid'], 'send_many option');
  raw := options -> 'invalid';
  if raw is not null and raw <> 'null'::jsonb then
    if raw not in ('"raise"'::jsonb, '"dead_letter"'::jsonb) then
      perform tributary.queue_option_error('invalid', raw,
        '''raise'' (send nothing and raise, as send does) or ''dead_letter'' (send the others; that message goes to the dead letters)');
    end if;
    dead_letter := raw = '"dead_letter"'::jsonb;
  end if;
  if keys is not null and cardinality(keys) <> total then
    perform tributary.queue_error(format('send_many: %s payloads but %s keys (give one key per payload, or keys NULL)', total, cardinality(keys)),
      'tributary_queue_option');
  end if;
  if total = 0 then return; end if;
  -- SQL NULL is no message, not even a dead letter (send refuses it too): always raised.
  null_at := array_position(payloads, null);
  if null_at is not null then
    perform tributary.queue_error(format('message %s of %s: payload must not be SQL NULL (use ''null''::jsonb for a JSON null)', null_at, total),
      'tributary_queue_payload');
  end if;

  -- send's rules (0005), one pass over the arrays; usually no row.
  select coalesce(array_agg(c.n order by c.n), '{}'), array_agg(c.rule order by c.n), array_agg(c.problem order by c.n)
    into bad_n, bad_rule, bad_problem
    from (
      select m.n::int as n,
             case when s.bytes > max_bytes then 'tributary_queue_payload' else 'tributary_queue_option' end as rule,
             case when s.bytes > max_bytes then format('payload is %s bytes, over the limit of %s bytes', s.bytes, max_bytes)
                  when m.key = '' or octet_length(m.key) > 1024
                    then format('key %s is not a non-empty string of at most 1024 bytes', left(to_jsonb(m.key)::text, 200))
                  when q.fifo and m.key is null
                    then format('queue %s is FIFO: give every message a key (its FIFO group)', quote_literal(send_many.queue)) end as problem
        from unnest(payloads, keys) with ordinality as m(payload, key, n)
       cross join lateral (select octet_length(m.payload::text) as bytes) s
    ) c
   where c.problem is not null;
  if cardinality(bad_n) > 0 and not dead_letter then
    perform tributary.queue_error(format('message %s of %s: %s', bad_n[1], total, bad_problem[1]), bad_rule[1],
      case when bad_rule[1] = 'tributary_queue_payload'
           then 'An administrator can raise the limit: SELECT tributary.set_limit(''max_data_bytes'', <bytes>); or send a reference to the data instead' end);
  end if;

  -- The messages, in array order: identity values are drawn as the ordered
  -- rows are inserted, so the ids ascend with the arrays (a FIFO key's
  -- messages keep their order, invariant 10).
  with sent as (
    insert into tributary.queue_messages (queue, key, payload, visible_at)
    select send_many.queue, m.key, m.payload, now()
      from unnest(payloads, keys) with ordinality as m(payload, key, n)
     where m.n <> all (bad_n)
     order by m.n
    returning id
  )
  select coalesce(array_agg(sent.id order by sent.id), '{}') into sent_ids from sent;

  if cardinality(bad_n) = 0 then
    if q.notify_states then
      foreach sent_id in array sent_ids loop
        perform tributary.job_state(send_many.queue, sent_id, 'queued', 0);
      end loop;
    end if;
    perform pg_notify('tributary_queue', send_many.queue);
    return query select s.id, null::text from unnest(sent_ids) with ordinality as s(id, n) order by s.n;
    return;
  end if;

  -- dead_letter: each refused message goes straight to the dead letters.
  dead_ids := array(select nextval(pg_get_serial_sequence('tributary.queue_messages', 'id')::regclass)
                      from generate_series(1, cardinality(bad_n)));
  insert into tributary.queue_dead_letters (id, queue, key, payload, enqueued_at, deliveries, last_error, history)
  select dead_ids[d.i], send_many.queue, keys[bad_n[d.i]], payloads[bad_n[d.i]], now(), 0,
         format('not queued: %s (%s)', bad_problem[d.i], bad_rule[d.i]), '[]'::jsonb
    from generate_subscripts(bad_n, 1) as d(i);

  for i in 1 .. total loop
    if next_bad <= cardinality(bad_n) and bad_n[next_bad] = i then
      id := dead_ids[next_bad];
      error := format('not queued: %s (%s)', bad_problem[next_bad], bad_rule[next_bad]);
      next_bad := next_bad + 1;
      if q.notify_states then perform tributary.job_state(send_many.queue, id, 'dead', 0, error); end if;
    else
      id := sent_ids[next_sent];
      error := null;
      next_sent := next_sent + 1;
      if q.notify_states then perform tributary.job_state(send_many.queue, id, 'queued', 0); end if;
    end if;
    return next;
  end loop;
  if cardinality(sent_ids) > 0 then perform pg_notify('tributary_queue', send_many.queue); end if;
end $$;

comment on function tributary.send_many(text, jsonb[], text[], jsonb) is
  'Sends many messages in array order, each checked as send checks it; returns (id, error) per message, in array order. '
  'options.invalid: ''raise'' (default) or ''dead_letter'' (a message that breaks a rule goes to the dead letters; error says why).';

-- 0007's default privileges already keep PUBLIC out of functions its owner
-- creates; said here too, since a migrate run by another role would not have them.
revoke all on function tributary.send_many(text, jsonb[], text[], jsonb) from public;
grant execute on function tributary.send_many(text, jsonb[], text[], jsonb) to tributary_writer, tributary_worker, tributary_admin;

do $$
begin
  execute format('grant usage on sequence %s to tributary_worker, tributary_admin',
                 pg_get_serial_sequence('tributary.queue_messages', 'id'));
end $$;
