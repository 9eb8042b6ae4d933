-- Queues, leaner: a claim rewrites no index entry, acks come in batches.
--
-- 0003 moved a claimed message to its expiry in the claim index (visible_at)
-- and gave it a receipt in a unique index: every claim wrote three index
-- entries (primary key, claim index, receipt) and every ack looked its
-- message up through the receipt index. That was ~225 µs of server CPU per
-- job, most of it index maintenance, and it put Tributary behind pg-boss and
-- graphile-worker on throughput (bench/README.md, bench:queue).
--
-- Now:
--   * A claim sets locked_until (the claim's expiry) and leaves visible_at
--     alone. No indexed column changes, so the claim is a HOT update: a new
--     row version on the same page and no index write at all. The table's
--     fillfactor goes from 80 to 50 so that a claim of every message of a
--     page finds room there (a claimed row is ~60 bytes longer: receipt,
--     worker, times); at 80 a third of batch claims found none and wrote
--     all their index entries. A waiting backlog takes ~1.6x the space. A message is in flight while locked_until > now();
--     claims skip in-flight rows at the head of the claim index (one heap
--     check each: a queue's in-flight rows are its workers' slots) and take
--     an expired claim's message back at its old place, first in line.
--   * A receipt is the message id (first 64 bits) and 64 random bits: ack,
--     nack, extend and release find the message through the primary key and
--     compare the whole receipt. The receipt index is gone. A receipt is as
--     hard to forge as before (64 random bits instead of 122, still checked
--     against the row); it only reveals the message id, which the claim
--     returns anyway.
--   * A claim that meets an expired claim on its message's last allowed
--     delivery buries it in the same statement (no separate locking sweep).
--   * ack_batch(queue, receipts[]) acknowledges many messages in one
--     statement and returns the receipts it acknowledged (the others were
--     stale); release(queue, receipts[]) gives claimed messages back without
--     counting a delivery (a worker's unstarted prefetch on stop()).
--
-- Upgrading with claims in flight: their receipts (random uuids from 0003)
-- no longer name their message, so acks of those claims are rejected as
-- stale and the messages are delivered again when the claims expire (at
-- least once, as on any worker crash). Their expiry is kept.

alter table tributary.queue_messages add column locked_until timestamptz;
alter table tributary.queue_messages set (fillfactor = 50);
update tributary.queue_messages set locked_until = visible_at where receipt is not null;
drop index tributary.queue_messages_receipt_idx;

comment on column tributary.queue_messages.visible_at is
  'Not claimable before this time (delay, run_at, a nack''s backoff). Unchanged by a claim.';
comment on column tributary.queue_messages.locked_until is
  'In flight until this time: the claim''s expiry (claim, extend). Null when never claimed or given back.';
comment on column tributary.queue_messages.receipt is
  'The current claim''s receipt: the message id in the first 64 bits, 64 random bits after.';

/** The message id a receipt names (its first 64 bits). */
create function tributary.receipt_message_id(receipt uuid) returns bigint
language sql immutable strict parallel safe as $$
  select ('x' || left(replace(receipt::text, '-', ''), 16))::bit(64)::bigint
$$;

/** A new receipt for a message: its id, then 64 random bits. */
create function tributary.new_receipt(id bigint) returns uuid
language sql volatile parallel safe as $$
  select (lpad(to_hex(id), 16, '0') || right(replace(gen_random_uuid()::text, '-', ''), 16))::uuid
$$;

/**
 * claim()'s one statement: pick the head (FIFO-aware, skipping messages in
 * flight), hand out receipts, and bury what expired on its last delivery.
 * Buried messages come back with a null receipt (claim() reports them to
 * watchers and leaves them out).
 */
create or replace function tributary.claim_batch(q tributary.queues, worker text, max int, visibility interval)
returns setof tributary.claimed_message
language plpgsql as $$
begin
  return query
  with picked as (
    select m.id, m.deliveries >= q.max_deliveries as exhausted
      from tributary.queue_messages m
     where m.queue = q.name and m.visible_at <= now()
       and (m.locked_until is null or m.locked_until <= now())
       and (not q.fifo or (
             -- the head of its key, and no message of its key in flight
             not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.id < m.id)
         and not exists (select 1 from tributary.queue_messages p
                          where p.queue = q.name and p.key = m.key and p.locked_until > now())))
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
           locked_until = now() + coalesce(visibility, q.visibility_timeout),
           claimed_by = worker,
           claimed_at = now(),
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

create or replace function tributary.claim(queue text, worker text, max int default 1, visibility interval default null)
returns setof tributary.claimed_message
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
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
  if not q.notify_states then
    return query select * from tributary.claim_batch(q, worker, max, visibility) c where c.receipt is not null;
    return;
  end if;
  for claimed_row in select * from tributary.claim_batch(q, worker, max, visibility) loop
    if claimed_row.receipt is null then
      perform tributary.job_state(claim.queue, claimed_row.id, 'dead', claimed_row.deliveries, 'visibility timeout expired');
    else
      perform tributary.job_state(claim.queue, claimed_row.id, 'running', claimed_row.deliveries);
      return next claimed_row;
    end if;
  end loop;
end $$;

create or replace function tributary.stale_receipt(queue text, receipt uuid) returns void
language plpgsql as $$
begin
  perform tributary.queue_error(
    format('receipt %s of queue %s is stale: the message was acknowledged, moved to the dead letters, or its claim expired and another worker claimed it',
      coalesce(receipt::text, 'NULL'), quote_literal(queue)),
    'tributary_queue_stale_receipt', 'claim again; keep handlers within the visibility timeout or extend() it');
end $$;

/** The in-flight message a receipt names, locked; or a stale-receipt error. */
create or replace function tributary.claimed(queue text, receipt uuid) returns tributary.queue_messages
language plpgsql as $$
declare
  m tributary.queue_messages;
begin
  select * into m from tributary.queue_messages x
   where x.id = tributary.receipt_message_id(claimed.receipt) and x.receipt = claimed.receipt and x.queue = claimed.queue
   for update;
  if not found then
    perform tributary.queue_settings(queue);
    perform tributary.stale_receipt(queue, receipt);
  end if;
  return m;
end $$;

create or replace function tributary.ack(queue text, receipt uuid) returns void
language plpgsql as $$
declare
  gone record;
begin
  delete from tributary.queue_messages x
   where x.id = tributary.receipt_message_id(ack.receipt) and x.receipt = ack.receipt and x.queue = ack.queue
  returning x.id, x.key, x.deliveries into gone;
  if not found then
    perform tributary.queue_settings(queue);
    perform tributary.stale_receipt(queue, receipt);
  end if;
  if gone.key is not null then perform pg_notify('tributary_queue', queue); end if;
  if (select notify_states from tributary.queues where name = ack.queue) then
    perform tributary.job_state(ack.queue, gone.id, 'succeeded', gone.deliveries);
  end if;
end $$;

/**
 * Acknowledges every message whose receipt is current, in one statement;
 * returns those receipts. A receipt left out was stale (see ack()).
 */
create function tributary.ack_batch(queue text, receipts uuid[]) returns setof uuid
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
  gone record;
  keyed boolean := false;
begin
  for gone in
    delete from tributary.queue_messages x
     using unnest(receipts) r(receipt)
     where x.id = tributary.receipt_message_id(r.receipt) and x.receipt = r.receipt and x.queue = q.name
    returning x.id, x.receipt, x.key, x.deliveries
  loop
    keyed := keyed or gone.key is not null;
    if q.notify_states then perform tributary.job_state(q.name, gone.id, 'succeeded', gone.deliveries); end if;
    return next gone.receipt;
  end loop;
  -- The next message of an acknowledged FIFO key can go now.
  if keyed then perform pg_notify('tributary_queue', q.name); end if;
end $$;

create or replace function tributary.nack(queue text, receipt uuid, error text default null, delay interval default null) returns void
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
     set receipt = null, locked_until = null, claimed_by = null, claimed_at = null, last_error = error, history = m.history,
         visible_at = now() + coalesce(delay, backoff)
   where id = m.id;
  perform pg_notify('tributary_queue', queue);
  if q.notify_states then perform tributary.job_state(nack.queue, m.id, 'failed', m.deliveries, error); end if;
end $$;

create or replace function tributary.extend(queue text, receipt uuid, visibility interval) returns timestamptz
language plpgsql as $$
declare
  until timestamptz;
begin
  if visibility is null or visibility <= interval '0' then
    perform tributary.queue_error('visibility must be positive', 'tributary_queue_option');
  end if;
  update tributary.queue_messages x set locked_until = now() + visibility
   where x.id = tributary.receipt_message_id(extend.receipt) and x.receipt = extend.receipt and x.queue = extend.queue
  returning x.locked_until into until;
  if not found then
    perform tributary.queue_settings(queue);
    perform tributary.stale_receipt(queue, receipt);
  end if;
  return until;
end $$;

/**
 * Gives claimed messages back untouched: claimable again at once, and the
 * claim does not count as a delivery (a worker claimed more than it started,
 * then stopped). Returns how many were given back; stale receipts are skipped.
 */
create function tributary.release(queue text, receipts uuid[]) returns int
language plpgsql as $$
declare
  q tributary.queues := tributary.queue_settings(queue);
  given record;
  released int := 0;
begin
  for given in
    update tributary.queue_messages x
       set receipt = null, locked_until = null, claimed_by = null, claimed_at = null, deliveries = x.deliveries - 1
      from unnest(receipts) r(receipt)
     where x.id = tributary.receipt_message_id(r.receipt) and x.receipt = r.receipt and x.queue = q.name
    returning x.id, x.deliveries
  loop
    released := released + 1;
    if q.notify_states then perform tributary.job_state(q.name, given.id, 'queued', given.deliveries); end if;
  end loop;
  if released > 0 then perform pg_notify('tributary_queue', q.name); end if;
  return released;
end $$;
