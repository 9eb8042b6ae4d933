-- Consumer groups (docs/ARCHITECTURE.md invariants 8 and 9) and key-ordered reads.
--
-- A group's members share the partitions of the streams they subscribe to.
-- Membership, assignment and committed offsets live here; the protocol that
-- changes them (join, heartbeat, rebalance, hand-off, leave) runs in the
-- client, one transaction at a time under the group's advisory lock
-- (packages/client/src/internal/consumer/membership.ts).

-- Every event of one key, in order (an event-sourced aggregate's history).
-- All events of a key share a partition, so offset order is their order.
create index events_key_idx on tributary.events (stream, key, "offset");

create table tributary.consumer_groups (
  group_name  text primary key check (group_name ~ '^[A-Za-z0-9._-]{1,200}$'),
  -- Bumped by every rebalance; an assignment carries the generation that made it.
  generation  bigint not null default 0,
  created_at  timestamptz not null default now()
);

create table tributary.group_members (
  group_name       text not null references tributary.consumer_groups on delete cascade,
  member_id        text not null,
  streams          text[] not null,
  session_timeout  interval not null,
  client           text,
  joined_at        timestamptz not null default now(),
  heartbeat_at     timestamptz not null default now(),
  primary key (group_name, member_id)
);

-- Who owns each partition, under which generation (fencing). While a
-- partition moves between two live members, the previous owner may still
-- commit under its old generation until it releases the partition (or the
-- release deadline passes); the new owner starts only after that.
create table tributary.group_assignments (
  group_name            text not null references tributary.consumer_groups on delete cascade,
  stream                text not null,
  partition             int not null,
  member_id             text not null,
  generation            bigint not null,
  releasing_member      text,
  releasing_generation  bigint,
  release_deadline      timestamptz,
  primary key (group_name, stream, partition),
  check ((releasing_member is null) = (releasing_generation is null))
);

-- The next offset the group will handle, per partition (Kafka semantics).
create table tributary.group_offsets (
  group_name    text not null references tributary.consumer_groups on delete cascade,
  stream        text not null,
  partition     int not null,
  next_offset   bigint not null check (next_offset >= 0),
  committed_at  timestamptz not null default now(),
  primary key (group_name, stream, partition)
);

-- Lag per group and partition: events in the stream the group has not handled.
create view tributary.group_lag as
select g.group_name, s.name as stream, p.partition,
       a.member_id, a.generation,
       coalesce(o.next_offset, 0) as committed_offset,
       coalesce(po.next_offset, 0) as end_offset,
       greatest(coalesce(po.next_offset, 0) - coalesce(o.next_offset, 0), 0) as lag,
       o.committed_at
  from tributary.consumer_groups g
  join tributary.streams s
    on exists (select 1 from tributary.group_members m where m.group_name = g.group_name and s.name = any (m.streams))
    or exists (select 1 from tributary.group_offsets o2 where o2.group_name = g.group_name and o2.stream = s.name)
  cross join lateral generate_series(0, s.partitions - 1) as p(partition)
  left join tributary.group_assignments a on a.group_name = g.group_name and a.stream = s.name and a.partition = p.partition
  left join tributary.group_offsets o on o.group_name = g.group_name and o.stream = s.name and o.partition = p.partition
  left join tributary.partition_offsets po on po.stream = s.name and po.partition = p.partition;
