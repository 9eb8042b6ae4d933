/**
 * The privilege model (migrations/0007_privileges.sql, invariant 12): each
 * Tributary role does what it is granted, and is refused, with an error that
 * names the missing grant, everywhere else. Login roles are cluster-wide, so
 * every name carries this run's suffix and is dropped afterwards.
 *
 * Rows another role may not see are hidden by row-level security: a direct
 * UPDATE or DELETE of them changes nothing (0 rows), a direct INSERT is
 * refused (42501), and the verbs (append, send, claim, ack, tail, consumer
 * groups) say which grant is missing.
 */
import { randomBytes } from "node:crypto";
import postgres, { type Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { migrate } from "@tributary/migrate";
import { Cluster, findInstallation } from "@tributary/testkit";
import { append, claim, consumer, ack, nack, extend, send, sendBatch, tailStream, work } from "@tributary/client";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { runCli } from "./support/cli.ts";
import { eventually } from "./support/processes.ts";

const GROUP_ROLES = ["tributary_admin", "tributary_relay", "tributary_writer", "tributary_reader", "tributary_worker"];

interface Refusal {
  readonly code: string;
  readonly message: RegExp;
  readonly hint?: RegExp;
}

/** Runs `attempt` and checks it fails with SQLSTATE `code` and a message (and hint) matching. */
async function refused(attempt: () => Promise<unknown>, expected: Refusal): Promise<void> {
  let error: { code?: string; message?: string; hint?: string } | null = null;
  try {
    await attempt();
  } catch (e) {
    error = e as typeof error;
  }
  expect(error, `expected a refusal matching ${expected.message}`).not.toBeNull();
  expect({ code: error!.code, message: error!.message }, `${error!.message} / ${JSON.stringify(error)}`).toMatchObject({ code: expected.code, message: expect.stringMatching(expected.message) });
  if (expected.hint) expect(error!.hint).toMatch(expected.hint);
}

/** The offsets of a stream's partition 0 this role can read (row-level security leaves out the rest). */
async function readableOffsets(sql: Sql, stream: string): Promise<number[]> {
  const rows = await sql<{ offset: string }[]>`
    select "offset"::text from tributary.events where stream = ${stream} and partition = 0 order by "offset" limit 10`;
  return rows.map((r) => Number(r.offset));
}

const permissionDenied = (what: string): Refusal => ({ code: "42501", message: new RegExp(`permission denied for ${what}`) });
const rowSecurity = (table: string, policy?: string): Refusal => ({
  code: "42501",
  message: new RegExp(`new row violates row-level security policy ${policy ? `"${policy}" ` : ""}for table "${table}"`),
});

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`privileges [${backend.name}]`, () => {
    const suffix = randomBytes(4).toString("hex");
    const role = {
      admin: `t_${suffix}_admin`,
      writer: `t_${suffix}_writer`,
      reader: `t_${suffix}_reader`,
      worker: `t_${suffix}_worker`,
      relay: `t_${suffix}_relay`,
      nobody: `t_${suffix}_nobody`,
      readers: `t_${suffix}_readers`, // a plain group role holding grants for its members
      member: `t_${suffix}_member`,
      feeder: `t_${suffix}_feeder`, // works a stream-fed queue
    };
    let db: TestDatabase;
    const connections = new Map<string, Sql>();
    const as = (name: string): Sql => {
      let sql = connections.get(name);
      if (!sql) {
        const url = new URL(db.url);
        url.username = name;
        sql = postgres(url.toString(), { max: 4, onnotice: () => {} });
        connections.set(name, sql);
      }
      return sql;
    };
    const superuser = () => db.sql;

    /** Events written as the relay would (superuser): the reader tests need rows, not a relay. */
    async function insertEvents(stream: string, partition: number, count: number): Promise<void> {
      await superuser()`
        insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at, segment)
        select ${stream}, ${partition}, o, gen_random_uuid(), 'k', 'T', jsonb_build_object('n', o), '{}', now(), 0
          from generate_series(0, ${count - 1}) o`;
      await superuser()`
        insert into tributary.partition_offsets (stream, partition, next_offset) values (${stream}, ${partition}, ${count})`;
    }

    beforeAll(async () => {
      db = await createTestDatabase(backend);
      const sql = superuser();
      await sql.unsafe(`
        create role ${role.admin} login in role tributary_admin;
        create role ${role.writer} login in role tributary_writer;
        create role ${role.reader} login in role tributary_reader;
        create role ${role.worker} login in role tributary_worker;
        create role ${role.relay} login replication bypassrls in role tributary_relay;
        create role ${role.nobody} login;
        create role ${role.readers} nologin in role tributary_reader;
        create role ${role.member} login in role ${role.readers};
        create role ${role.feeder} login in role tributary_worker, tributary_reader;`);
      for (const [stream, partitions] of [["orders.eu", 2], ["orders.us", 2], ["ordersX", 1], ["payroll", 2]] as const) {
        await sql`select tributary.create_stream(${stream}, ${partitions})`;
      }
      await insertEvents("orders.eu", 0, 3);
      await insertEvents("payroll", 0, 2);
      await sql`select tributary.create_queue('emails'), tributary.create_queue('payroll')`;
      await sql`select tributary.grant_stream(${role.writer}, 'orders.*', 'write')`;
      await sql`select tributary.grant_queue(${role.writer}, 'emails', 'send')`;
      await sql`select tributary.grant_stream(${role.reader}, 'orders.*', 'read')`;
      await sql`select tributary.grant_group(${role.reader}, 'billing-*')`;
      await sql`select tributary.grant_queue(${role.worker}, 'emails', 'work')`;
      await sql`select tributary.grant_stream(${role.readers}, 'payroll', 'read')`;
      // Another group's state, which the reader must not touch.
      await sql`insert into tributary.consumer_groups (group_name) values ('hr')`;
      await sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('hr', 'payroll', 0, 1)`;
    });

    afterAll(async () => {
      await Promise.all([...connections.values()].map((c) => c.end({ timeout: 1 })));
      await db?.drop();
      const admin = postgres(backend.serverUrl, { max: 1, onnotice: () => {} });
      try {
        for (const name of Object.values(role)) await admin.unsafe(`drop role if exists ${name}`);
      } finally {
        await admin.end();
      }
    });

    it("migrate creates the group roles, leaves PUBLIC nothing in the schema, and pins every SECURITY DEFINER search_path", async () => {
      const sql = superuser();
      const roles = await sql<{ rolname: string; rolcanlogin: boolean }[]>`
        select rolname, rolcanlogin from pg_roles where rolname = any (${GROUP_ROLES}) order by rolname`;
      expect(roles.map((r) => r.rolname)).toEqual([...GROUP_ROLES].sort());
      expect(roles.every((r) => !r.rolcanlogin)).toBe(true);

      const publicFunctions = await sql<{ name: string }[]>`
        select p.oid::regprocedure::text as name from pg_proc p
         where p.pronamespace = 'tributary'::regnamespace
           and (p.proacl is null or exists (select 1 from aclexplode(p.proacl) a where a.grantee = 0))`;
      expect(publicFunctions).toEqual([]);
      const publicTables = await sql<{ name: string }[]>`
        select c.oid::regclass::text as name from pg_class c
         where c.relnamespace = 'tributary'::regnamespace and c.relkind in ('r', 'p', 'v', 'S')
           and exists (select 1 from aclexplode(c.relacl) a where a.grantee = 0)`;
      expect(publicTables).toEqual([]);
      const unpinned = await sql<{ name: string }[]>`
        select p.oid::regprocedure::text as name from pg_proc p
         where p.pronamespace = 'tributary'::regnamespace and p.prosecdef
           and not exists (select 1 from unnest(p.proconfig) c where c like 'search\\_path=%')`;
      expect(unpinned).toEqual([]);
      const prosecdef = await sql`select 1 from pg_proc where pronamespace = 'tributary'::regnamespace and prosecdef`;
      expect(prosecdef.length).toBeGreaterThan(0);
    });

    it("on a cluster without the group roles, migrate as a role without CREATEROLE says what to run; with CREATEROLE it creates them", async (ctx) => {
      const server = inject("servers").find((s) => s.url === backend.serverUrl);
      if (!server || server.kind === "external") {
        ctx.skip("needs a cluster of its own (the group roles are cluster-wide); unset TRIBUTARY_TEST_DATABASE_URL to run it");
        return;
      }
      const installation = findInstallation(server.kind);
      if ("missing" in installation) throw new Error(installation.missing);
      const cluster = await Cluster.start(installation);
      try {
        const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
        await admin.unsafe("create role owner_plain login replication");
        await admin.unsafe("create database plain owner owner_plain");
        const url = new URL(cluster.urlFor("plain"));
        url.username = "owner_plain";
        const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
        try {
          await refused(() => migrate(sql, { slotName: "plain" }), {
            code: "MIGRATION_FAILED",
            message: /role owner_plain may not create roles: run migrate once as a role with CREATEROLE .*CREATE ROLE tributary_admin NOLOGIN;/,
          });
          await admin.unsafe("alter role owner_plain createrole");
          await migrate(sql, { slotName: "plain" });
          const roles = await sql`select rolname from pg_roles where rolname = any (${GROUP_ROLES})`;
          expect(roles.length).toBe(GROUP_ROLES.length);
          // The owner (not a superuser) still appends, with no grant.
          await append(sql, { stream: "mine", key: "k", type: "T", data: {} });
        } finally {
          await sql.end({ timeout: 1 });
          await admin.end({ timeout: 1 });
        }
      } finally {
        await cluster.destroy();
      }
    });

    it("a role in no Tributary role can use nothing", async () => {
      const nobody = as(role.nobody);
      await refused(() => nobody`select count(*) from tributary.events`, permissionDenied("schema tributary"));
      await refused(() => append(nobody, { stream: "orders.eu", key: "k", type: "T", data: {} }), permissionDenied("schema tributary"));
      await refused(() => nobody`select tributary.grant_stream(${role.nobody}, '*', 'read')`, permissionDenied("schema tributary"));
    });

    describe("writer", () => {
      it("appends to its streams and sends to its queues", async () => {
        const writer = as(role.writer);
        const id = await append(writer, { stream: "orders.eu", key: "o-1", type: "OrderPlaced", data: { total: 5 } });
        expect(id).toMatch(/^[0-9a-f-]{36}$/);
        await writer`select tributary.create_stream('orders.new', 4)`;
        const messageId = await send(writer, "emails", { to: "a@example.com" });
        expect(Number(messageId)).toBeGreaterThan(0);
        // dedupe: the second send returns the first id (the writer reads ids of its queue)
        expect(await send(writer, "emails", { to: "b" }, { dedupeKey: "d1" })).toBe(await send(writer, "emails", { to: "b" }, { dedupeKey: "d1" }));
        // headers (0014): the writer may insert them too
        const [sent] = await superuser()<{ headers: unknown }[]>`
          select headers from tributary.queue_messages where id = ${await send(writer, "emails", { to: "c" }, { headers: { tenant: "eu" } })}`;
        expect(sent!.headers).toEqual({ tenant: "eu" });
        // send_batch (0015): the same inserts and dedupe lookup, set-based
        const dedupeId = await send(writer, "emails", { to: "b" }, { dedupeKey: "d1" });
        const ids = await sendBatch(writer, "emails", [{ payload: { to: "d" }, headers: { tenant: "eu" } }, { payload: { to: "b" }, dedupeKey: "d1" }]);
        expect(ids[1]).toBe(dedupeId);
        expect(Number(ids[0])).toBeGreaterThan(Number(dedupeId));
        await refused(() => sendBatch(writer, "payroll", [{ payload: 1 }]), { code: "42501", message: /may not use queue 'payroll'/ });
      });

      it("appending to a stream it was not granted is refused with the grant to ask for", async () => {
        const writer = as(role.writer);
        await refused(() => append(writer, { stream: "payroll", key: "k", type: "T", data: {} }), {
          code: "42501",
          message: new RegExp(`role ${role.writer} may not append to stream 'payroll'`),
          hint: new RegExp(`select tributary.grant_stream\\('${role.writer}', 'payroll', 'write'\\)`),
        });
        await refused(() => writer`select tributary.append_many(array['orders.eu', 'ordersX'], array['k', 'k'], array['T', 'T'], array['{}', '{}']::jsonb[])`, {
          code: "42501",
          message: /may not append to stream 'ordersX'/,
        });
      });

      it("append checks the session's role (its login, or the role it SET ROLE to), not a SECURITY DEFINER wrapper's owner", async () => {
        await superuser().begin(async (tx) => {
          await tx.unsafe(`set local role ${role.writer}`);
          await append(tx, { stream: "orders.eu", key: "k", type: "T", data: {} });
          await refused(() => tx.savepoint((sp) => append(sp, { stream: "payroll", key: "k", type: "T", data: {} })), {
            code: "42501", message: new RegExp(`role ${role.writer} may not append to stream 'payroll'`),
          });
        });
        // The writer's own definer function, run by a role with no grant: checked as that caller, refused.
        const wrapper = `public.t_${suffix}_append_orders`;
        await superuser().unsafe(`
          create function ${wrapper}() returns uuid language sql security definer set search_path = pg_catalog, pg_temp
            as $$ select tributary.append('orders.eu', 'k', 'T', '{}') $$;
          alter function ${wrapper}() owner to ${role.writer};
          grant execute on function ${wrapper}() to ${role.nobody};`);
        await refused(() => as(role.nobody).unsafe(`select ${wrapper}()`), {
          code: "42501", message: new RegExp(`role ${role.nobody} may not append to stream 'orders.eu'`),
        });
      });

      it("is refused: creating other streams, another queue, reading, claiming, creating queues, granting", async () => {
        const writer = as(role.writer);
        await refused(() => writer`select tributary.create_stream('payroll2')`, rowSecurity("streams"));
        await refused(() => send(writer, "payroll", { raise: 1 }), {
          code: "42501",
          message: new RegExp(`role ${role.writer} may not use queue 'payroll'`),
          hint: /select tributary\.grant_queue\(/,
        });
        await refused(() => writer`select count(*) from tributary.events`, permissionDenied("table events"));
        await refused(() => claim(writer, "emails", "w"), permissionDenied("function claim"));
        await refused(() => writer`select tributary.create_queue('mine')`, permissionDenied("function create_queue"));
        await refused(() => writer`select tributary.grant_stream(${role.writer}, '*', 'write')`, permissionDenied("function grant_stream"));
        await refused(() => writer`insert into tributary.grants (role, kind, pattern, privilege) values (${role.writer}, 'stream', '*', 'write')`, permissionDenied("table grants"));
        await refused(() => writer`select pg_catalog.count(*) from tributary.queue_messages where payload is not null`, permissionDenied("table queue_messages"));
        await refused(() => writer`update tributary.group_offsets set next_offset = 0`, permissionDenied("table group_offsets"));
        await refused(() => writer`select tributary.set_limit('max_data_bytes', 1073741823)`, permissionDenied("function set_limit"));
        await refused(() => writer`update tributary.limits set value = max_value`, permissionDenied("table limits"));
        await refused(() => writer`select secret from tributary.signing_keys`, permissionDenied("table signing_keys"));
        await refused(() => writer`select tributary.authorize_append('payroll')`, permissionDenied("function authorize_append"));
      });
    });

    describe("reader", () => {
      it("reads its streams, and nothing of the others", async () => {
        const reader = as(role.reader);
        expect(await readableOffsets(reader, "orders.eu")).toEqual([0, 1, 2]);
        const [row] = await reader<{ streams: string[]; n: string }[]>`
          select array_agg(distinct stream order by stream) as streams, count(*)::text as n from tributary.events`;
        expect(row!.streams).toEqual(["orders.eu"]);
        expect(await readableOffsets(reader, "payroll")).toEqual([]);
        const ends = await reader<{ stream: string }[]>`select distinct stream from tributary.partition_offsets`;
        expect(ends.map((e) => e.stream)).toEqual(["orders.eu"]);
        const streams = await reader<{ name: string }[]>`select name from tributary.streams order by name`;
        expect(streams.map((s) => s.name).filter((n) => n !== "orders.new")).toEqual(["orders.eu", "orders.us"]);
      });

      it("tailing a stream it may not read is refused with the grant to ask for", async () => {
        const reader = as(role.reader);
        const tail = tailStream(reader, { stream: "payroll", from: "earliest" })[Symbol.asyncIterator]();
        await refused(() => tail.next(), {
          code: "42501",
          message: new RegExp(`role ${role.reader} may not read stream 'payroll'`),
          hint: new RegExp(`select tributary.grant_stream\\('${role.reader}', 'payroll', 'read'\\)`),
        });
      });

      it("runs a consumer group it was granted and commits its offsets", async () => {
        const reader = as(role.reader);
        const seen: number[] = [];
        const member = await consumer(reader, {
          group: "billing-1", streams: ["orders.eu"], handler: async (e) => void seen.push(e.offset),
          heartbeatIntervalMs: 200, log: () => {},
        });
        try {
          await eventually("the member to handle orders.eu/0", () => seen.length === 3);
          await eventually("the offsets to be committed", async () => {
            const [o] = await superuser()<{ next_offset: string }[]>`
              select next_offset::text from tributary.group_offsets where group_name = 'billing-1' and stream = 'orders.eu' and partition = 0`;
            return o?.next_offset === "3";
          });
        } finally {
          await member.stop();
        }
      });

      it("is refused a group it was not granted, and a stream it may not read inside its own group", async () => {
        const reader = as(role.reader);
        await refused(() => consumer(reader, { group: "hr", streams: ["orders.eu"], handler: async () => {}, log: () => {} }), {
          code: "42501",
          message: new RegExp(`role ${role.reader} may not consume in group 'hr'`),
          hint: new RegExp(`select tributary.grant_group\\('${role.reader}', 'hr'\\)`),
        });
        await refused(() => consumer(reader, { group: "billing-2", streams: ["payroll"], handler: async () => {}, log: () => {} }),
          { code: "42501", message: /may not read stream 'payroll'/ });
      });

      it("cannot change another group's offsets, delete it, or write events", async () => {
        const reader = as(role.reader);
        const updated = await reader`update tributary.group_offsets set next_offset = 0 where group_name = 'hr'`;
        expect(updated.count).toBe(0);
        const deleted = await reader`delete from tributary.consumer_groups where group_name = 'hr'`;
        expect(deleted.count).toBe(0);
        await refused(() => reader`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('hr', 'payroll', 1, 0)`,
          rowSecurity("group_offsets"));
        await refused(() => reader`insert into tributary.consumer_groups (group_name) values ('payroll-thief')`, rowSecurity("consumer_groups"));
        // Its own group, a stream it may not read: refused too.
        await reader`insert into tributary.consumer_groups (group_name) values ('billing-3')`;
        await refused(() => reader`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('billing-3', 'payroll', 0, 0)`,
          rowSecurity("group_offsets", "readable_streams"));
        await refused(() => reader`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('hr', 'orders.eu', 1, 0)`,
          rowSecurity("group_offsets"));
        const [hr] = await superuser()<{ next_offset: string }[]>`select next_offset::text from tributary.group_offsets where group_name = 'hr'`;
        expect(hr!.next_offset).toBe("1");
        await refused(() => reader`insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at)
                                   values ('orders.eu', 1, 0, gen_random_uuid(), 'k', 'T', '{}', '{}', now())`, permissionDenied("table events"));
        // A segment's own table (the relay copies into it, migration 0012) is no way around row-level security.
        const [segment] = await superuser()<{ table_name: string }[]>`select table_name from tributary.segments where stream = 'payroll' and segment = 0`;
        await refused(() => reader.unsafe(`select * from tributary."${segment!.table_name}"`), permissionDenied(`table ${segment!.table_name}`));
        await refused(() => reader.unsafe(`insert into tributary."${segment!.table_name}" select * from tributary."${segment!.table_name}"`),
          permissionDenied(`table ${segment!.table_name}`));
        await refused(() => append(reader, { stream: "orders.eu", key: "k", type: "T", data: {} }), permissionDenied("function append"));
        await refused(() => claim(reader, "emails", "w"), permissionDenied("function claim"));
        await refused(() => reader`select * from tributary.relay_checkpoints`, permissionDenied("table relay_checkpoints"));
        await refused(() => reader`select secret from tributary.signing_keys`, permissionDenied("table signing_keys"));
        await refused(() => reader`select tributary.set_limit('max_depth', 1000)`, permissionDenied("function set_limit"));
      });

      it("row-level security keeps a partition read an index range scan (no sort of the partition's rest)", async () => {
        await insertEvents("orders.us", 1, 30_000);
        await superuser()`analyze tributary.events`;
        const reader = as(role.reader);
        // The consumer's fetch (consumer/fetch.ts), one partition.
        const plan = await reader.begin(async (tx) => {
          await tx`set local plan_cache_mode = force_generic_plan`;
          return tx.unsafe(`
            explain select e.* from unnest(array['orders.us']::text[], array[1]::int[], array[100]::bigint[]) as p(stream, partition, from_offset)
              cross join lateral (select * from tributary.events e
                                   where e.stream = p.stream and e.partition = p.partition and e."offset" >= p.from_offset
                                   order by e."offset" limit 500) e`);
        });
        const text = plan.map((r) => (r as Record<string, string>)["QUERY PLAN"]).join("\n");
        // Each stream's segment is scanned on its primary key (migration 0010), in offset order.
        const [segment] = await superuser()<{ table_name: string }[]>`select table_name from tributary.segments where stream = 'orders.us' and segment = 0`;
        expect(text).toContain(`Index Scan using "${segment!.table_name}_pkey"`);
        expect(text).not.toMatch(/Sort|Bitmap/);
        expect(text).toMatch(/Filter: CASE WHEN \(stream ~~ ANY/);
      });

      it("a grant to a group role applies to its members", async () => {
        const member = as(role.member);
        expect(await readableOffsets(member, "payroll")).toEqual([0, 1]);
        expect(await readableOffsets(member, "orders.eu")).toEqual([]);
      });
    });

    describe("worker", () => {
      it("claims, extends, nacks and acks on its queue", async () => {
        const worker = as(role.worker);
        await superuser()`delete from tributary.queue_messages where queue = 'emails'`;
        await superuser()`select tributary.send('emails', '{"n": 1}', '{"headers": {"tenant": "eu"}}')`;
        const [first] = await claim(worker, "emails", "w1", { max: 1 });
        expect(first).toBeDefined();
        expect(first!.headers).toEqual({ tenant: "eu" });
        await extend(worker, "emails", first!.receipt, 60);
        await nack(worker, "emails", first!.receipt, { error: "retry", delaySeconds: 0 });
        const [again] = await claim(worker, "emails", "w1", { max: 1 });
        expect(again!.id).toBe(first!.id);
        await ack(worker, "emails", again!.receipt);
      });

      it("runs work() on its queue", async () => {
        const worker = as(role.worker);
        await superuser()`select tributary.send('emails', '{"job": "welcome"}')`;
        const handled: unknown[] = [];
        const running = await work(worker, "emails", async (m) => void handled.push(m.payload), { log: () => {} });
        try {
          await eventually("the worker to handle the message", () => handled.some((p) => (p as { job?: string }).job === "welcome"));
        } finally {
          await running.stop();
        }
      });

      it("works a stream-fed queue with read on the stream, its feeder group, and send and work on the queue", async () => {
        const sql = superuser();
        await sql`select tributary.create_queue('orders-feed', '{"stream": "orders.eu"}')`;
        await sql`select tributary.grant_stream(${role.feeder}, 'orders.eu', 'read')`;
        await sql`select tributary.grant_group(${role.feeder}, 'tributary.queue.orders-feed')`;
        await sql`select tributary.grant_queue(${role.feeder}, 'orders-feed', 'send')`;
        await sql`select tributary.grant_queue(${role.feeder}, 'orders-feed', 'work')`;
        const offsets: number[] = [];
        const running = await work(as(role.feeder), "orders-feed", async (m) => void offsets.push((m.payload as { offset: number }).offset), { log: () => {} });
        try {
          await eventually("the fed messages to be handled", () => [0, 1, 2].every((o) => offsets.includes(o)));
        } finally {
          await running.stop();
        }
      });

      it("is refused another queue, rewriting payloads, moving messages, sending, and admin verbs", async () => {
        const worker = as(role.worker);
        await superuser()`select tributary.send('payroll', '{"salary": 100}')`;
        const [theirs] = await claim(superuser(), "payroll", "hr-worker", { max: 1 });
        const denied = { code: "42501", message: new RegExp(`role ${role.worker} may not use queue 'payroll'`), hint: /grant_queue/ };
        await refused(() => claim(worker, "payroll", "w1"), denied);
        await refused(() => ack(worker, "payroll", theirs!.receipt), denied);
        await refused(() => extend(worker, "payroll", theirs!.receipt, 60), denied);
        await refused(() => nack(worker, "payroll", theirs!.receipt), denied);
        // Its own queue's receipt-less tricks: payload and queue are not its to change.
        await superuser()`select tributary.send('emails', '{"n": 2}')`;
        await refused(() => worker`update tributary.queue_messages set payload = '{"evil": true}' where queue = 'emails'`, permissionDenied("table queue_messages"));
        await refused(() => worker`update tributary.queue_messages set queue = 'payroll' where queue = 'emails'`, permissionDenied("table queue_messages"));
        // Rows of payroll are invisible: nothing read, nothing changed.
        expect((await worker`select * from tributary.queue_messages where queue = 'payroll'`).length).toBe(0);
        expect((await worker`update tributary.queue_messages set visible_at = now() where queue = 'payroll'`).count).toBe(0);
        expect((await worker`delete from tributary.queue_messages where queue = 'payroll'`).count).toBe(0);
        const [payroll] = await superuser()<{ n: string }[]>`select count(*)::text as n from tributary.queue_messages where queue = 'payroll'`;
        expect(payroll!.n).toBe("1");
        await refused(() => send(worker, "emails", { n: 3 }), permissionDenied("function send"));
        await refused(() => worker`select tributary.redrive('emails')`, permissionDenied("function redrive"));
        await refused(() => worker`select tributary.create_queue('emails', '{"max_deliveries": 100}')`, permissionDenied("function create_queue"));
        await refused(() => worker`select tributary.grant_queue(${role.worker}, 'payroll', 'work')`, permissionDenied("function grant_queue"));
        await refused(() => worker`select count(*) from tributary.events`, permissionDenied("table events"));
      });
    });

    describe("admin", () => {
      it("grants and revokes by pattern; '*' is the only wildcard", async () => {
        const admin = as(role.admin);
        const member = as(role.member);
        await admin`select tributary.grant_stream(${role.readers}, 'orders.*', 'read')`;
        expect(await readableOffsets(member, "orders.eu")).toEqual([0, 1, 2]);
        expect(await readableOffsets(member, "ordersX")).toEqual([]);
        const list = await admin<{ role: string; pattern: string; via: string[] }[]>`
          select role, pattern, via from tributary.grant_list where role = ${role.readers} order by pattern`;
        expect(list).toEqual([
          { role: role.readers, pattern: "orders.*", via: ["tributary_reader"] },
          { role: role.readers, pattern: "payroll", via: ["tributary_reader"] },
        ]);
        const [revoked] = await admin<{ ok: boolean }[]>`select tributary.revoke_stream(${role.readers}, 'orders.*', 'read') as ok`;
        expect(revoked!.ok).toBe(true);
        expect(await readableOffsets(member, "orders.eu")).toEqual([]);
        await refused(() => admin`select tributary.grant_stream(${role.readers}, 'orders.%', 'read')`, { code: "22023", message: /invalid stream pattern 'orders\.%'/ });
        await refused(() => admin`select tributary.grant_queue(${role.readers}, 'emails', 'read')`, { code: "22023", message: /invalid queue privilege 'read'/ });
      });

      it("runs tributary status, groups and queues", async () => {
        const url = new URL(db.url);
        url.username = role.admin;
        for (const command of [["status", "--json"], ["groups", "--json"], ["queues", "--json"]]) {
          const result = await runCli([...command, "--database-url", url.toString()]);
          expect(result.code, `${command.join(" ")}: ${result.stderr}`).toBe(0);
          expect(result.stdout).toMatch(command[0] === "queues" ? /payroll/ : command[0] === "groups" ? /hr/ : /orders\.eu/);
        }
      });

      it("creates queues, reads every stream and queue, but writes no events", async () => {
        const admin = as(role.admin);
        await admin`select tributary.create_queue('admin-made')`;
        await superuser()`select tributary.send('payroll', '{"salary": 200}')`;
        const [row] = await admin<{ n: string }[]>`select count(distinct stream)::text as n from tributary.events`;
        expect(Number(row!.n)).toBeGreaterThanOrEqual(2);
        expect((await admin`select * from tributary.queue_messages where queue = 'payroll'`).length).toBeGreaterThan(0);
        await refused(() => admin`insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at)
                                  values ('orders.eu', 1, 0, gen_random_uuid(), 'k', 'T', '{}', '{}', now())`, permissionDenied("table events"));
        await refused(() => admin`update tributary.relay_checkpoints set version = version + 1`, permissionDenied("table relay_checkpoints"));
        await refused(() => admin`select secret from tributary.signing_keys`, permissionDenied("table signing_keys"));
        await refused(() => admin`insert into tributary.rejected_messages (slot_name, lsn, commit_lsn, reason, detail, raw)
                                  values ('x', '0/1', '0/1', 'unsigned', 'forged by hand', decode('00', 'hex'))`, permissionDenied("table rejected_messages"));
        await admin`select tributary.set_limit('max_data_bytes', 2097152)`;
        const [limit] = await as(role.reader)<{ value: string }[]>`select value::text from tributary.limits where name = 'max_data_bytes'`;
        expect(limit!.value).toBe("2097152");
        await admin`select tributary.set_limit('max_data_bytes', 1048576)`;
      });
    });

    describe("relay", () => {
      it("relays as a non-superuser REPLICATION login in tributary_relay, and touches nothing else", async () => {
        const url = new URL(db.url);
        url.username = role.relay;
        const relay = startRelay({ databaseUrl: url.toString(), slotName: db.slotName, log: () => {} });
        try {
          const id = await append(as(role.writer), { stream: "orders.us", key: "r-1", type: "Relayed", data: { via: "relay" } });
          await eventually("the relay to write the event", async () =>
            (await superuser()`select 1 from tributary.events where id = ${id}`).length === 1);
        } finally {
          await relay.stop();
        }
        const asRelay = as(role.relay);
        await refused(() => asRelay`select * from tributary.group_offsets`, permissionDenied("table group_offsets"));
        await refused(() => asRelay`select * from tributary.queue_messages`, permissionDenied("table queue_messages"));
        await refused(() => asRelay`delete from tributary.grants`, permissionDenied("table grants"));
        await refused(() => asRelay`select tributary.set_limit('max_data_bytes', 1)`, permissionDenied("function set_limit"));
        expect((await asRelay`select id from tributary.signing_keys`).length).toBeGreaterThan(0);
        await refused(() => append(asRelay, { stream: "orders.eu", key: "k", type: "T", data: {} }), permissionDenied("function append"));
      });
    });
  });
}
