/**
 * Stream-fed queues go through the queue's own rules (migrations/0008):
 * tributary.send_many checks every message as send does and announces it as
 * send does, and the feeder sends with it. A fed event the queue refuses goes
 * to the dead letters and the feeder goes on (docs/ARCHITECTURE.md invariant
 * 13); a caller of send_many chooses between that and send's error.
 */
import { randomBytes } from "node:crypto";
import postgres, { type Sql } from "postgres";
import { afterEach, describe, expect, it } from "vitest";
import { appendBatch, createQueue, createStream, work, type QueueWorker } from "@tributary/client";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A jsonb parameter: JSON text, cast in the statement (as text first: a jsonb-typed parameter would be JSON-encoded again). */
const j = (value: unknown): string => JSON.stringify(value);

interface JobNotification {
  queue: string;
  id: string;
  state: string;
  deliveries: number;
  error: string | null;
}

/** LISTEN tributary_jobs (README "Job status for other services"): every notification, parsed. */
async function listenJobs(sql: Sql): Promise<{ seen: JobNotification[]; stop: () => Promise<void> }> {
  const seen: JobNotification[] = [];
  const listener = await sql.listen("tributary_jobs", (payload) => {
    const n = JSON.parse(payload) as JobNotification;
    seen.push({ ...n, id: String(n.id) });
  });
  return { seen, stop: () => listener.unlisten() };
}

async function sqlError(run: () => Promise<unknown>): Promise<{ code?: string; message: string; constraint_name?: string; hint?: string }> {
  const error = await run().then(() => null, (e: unknown) => e);
  expect(error, "expected an error").not.toBeNull();
  return error as { message: string; constraint_name?: string; hint?: string };
}

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) describe(`stream-fed queues [${backend.name}]`, () => {
  let db: TestDatabase;
  const workers: QueueWorker[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  /** After the database is gone: cluster-wide roles. */
  const afterDrop: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    await Promise.allSettled(workers.splice(0).map((w) => w.stop()));
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await db?.drop();
    for (const cleanup of afterDrop.splice(0)) await cleanup();
  });

  it("a stream-fed queue with notify_states announces every fed message as queued on tributary_jobs, before it runs", async () => {
    db = await createTestDatabase(backend);
    const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    cleanups.push(() => relay.stop());
    await createStream(db.sql, "orders", 2);
    await createQueue(db.sql, "order-work", { stream: "orders", notifyStates: true });
    const jobs = await listenJobs(db.sql);
    cleanups.push(jobs.stop);
    const handled: string[] = [];
    workers.push(await work(db.sql, "order-work", (m) => void handled.push(String(m.id)), { log: () => {} }));
    await appendBatch(db.sql, Array.from({ length: 5 }, (_, i) => ({ stream: "orders", key: `o-${i}`, type: "OrderPlaced", data: { i } })));
    await eventually("the 5 fed messages handled", () => handled.length === 5, 30_000);
    await eventually("every handled message announced as succeeded", () =>
      handled.every((id) => jobs.seen.some((n) => n.id === id && n.state === "succeeded")), 5_000);
    for (const id of handled) {
      const states = jobs.seen.filter((n) => n.id === id);
      expect(states.map((n) => n.state), `job ${id}`).toEqual(["queued", "running", "succeeded"]);
      expect(states[0]).toMatchObject({ queue: "order-work", deliveries: 0, error: null });
    }
  });

  it("the payload check applies to fed messages: an event whose message is over max_data_bytes goes to the dead letters, logged, and the events after it are fed", async () => {
    db = await createTestDatabase(backend);
    const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    cleanups.push(() => relay.stop());
    await db.sql`select tributary.set_limit('max_data_bytes', 1000)`;
    await createStream(db.sql, "orders", 1);
    await createQueue(db.sql, "order-work", { stream: "orders", notifyStates: true });
    const jobs = await listenJobs(db.sql);
    cleanups.push(jobs.stop);
    const handled: number[] = [];
    const logs: string[] = [];
    workers.push(await work<{ offset: number }>(db.sql, "order-work", (m) => void handled.push(m.payload.offset), { log: (line) => logs.push(line) }));
    // The data (~910 bytes) is within the limit, so append takes it; the message, the
    // whole event around it, is not: send would refuse it, and so must the feeder.
    await appendBatch(db.sql, [
      { stream: "orders", key: "a", type: "OrderPlaced", data: { n: 0 } },
      { stream: "orders", key: "b", type: "OrderPlaced", data: { pad: "x".repeat(900) } },
      { stream: "orders", key: "c", type: "OrderPlaced", data: { n: 2 } },
    ]);
    await eventually("the events around the refused one handled", () => handled.includes(0) && handled.includes(2), 30_000);
    await eventually("the refused event in the dead letters", async () =>
      (await db.sql`select 1 from tributary.queue_dead_letters where queue = 'order-work'`).length === 1, 5_000);
    await sleep(300);
    expect(handled.sort()).toEqual([0, 2]);
    expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0);
    const [dead] = await db.sql<{ id: string; key: string; deliveries: number; last_error: string; offset: number; bytes: number }[]>`
      select id::text, key, deliveries, last_error, (payload ->> 'offset')::int as offset, octet_length(payload::text) as bytes
        from tributary.queue_dead_letters where queue = 'order-work'`;
    expect(dead).toMatchObject({ key: "b", deliveries: 0, offset: 1 });
    expect(dead!.last_error).toBe(`not queued: payload is ${dead!.bytes} bytes, over the limit of 1000 bytes (tributary_queue_payload)`);
    expect(logs.join("\n")).toMatch(new RegExp(`partition 0, offset 1\\) not queued: payload is ${dead!.bytes} bytes.*went to the dead letters as ${dead!.id}$`));
    await eventually("the dead letter announced", () => jobs.seen.some((n) => n.id === dead!.id), 5_000);
    expect(jobs.seen.find((n) => n.id === dead!.id)).toMatchObject({ state: "dead", deliveries: 0, error: dead!.last_error });
  });

  it("send_many sends in array order, each message checked as send checks it: raise refuses the whole call, dead_letter sets the breaker aside", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    await createQueue(sql, "jobs", { notifyStates: true });
    await createQueue(sql, "lanes", { fifo: true });
    await sql`select tributary.set_limit('max_data_bytes', 100)`;
    const jobs = await listenJobs(sql);
    cleanups.push(jobs.stop);
    const big = { pad: "x".repeat(100) };
    const messageCount = async () => Number((await sql`select count(*)::int as n from tributary.queue_messages`)[0]!.n);

    const sent = await sql<{ id: string; error: string | null }[]>`
      select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb, ${j({ n: 2 })}::text::jsonb, ${j({ n: 3 })}::text::jsonb], array['a', null, 'c'])`;
    expect(sent.map((r) => r.error)).toEqual([null, null, null]);
    expect(sent.map((r) => BigInt(r.id))).toEqual([...sent.map((r) => BigInt(r.id))].sort((a, b) => (a < b ? -1 : 1)));
    const claimed = await sql<{ id: string; payload: { n: number }; key: string | null }[]>`select id::text, payload, key from tributary.claim('jobs', 'w', 10)`;
    expect(claimed.map((m) => [m.id, m.payload.n, m.key])).toEqual([[sent[0]!.id, 1, "a"], [sent[1]!.id, 2, null], [sent[2]!.id, 3, "c"]]);

    // raise (the default): send's error, naming the message; nothing sent.
    const before = await messageCount();
    const tooBig = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 4 })}::text::jsonb, ${j(big)}::text::jsonb])`);
    expect(tooBig).toMatchObject({ code: "22023", constraint_name: "tributary_queue_payload" });
    expect(tooBig.message).toMatch(/^message 2 of 2: payload is \d+ bytes, over the limit of 100 bytes$/);
    expect(tooBig.hint).toMatch(/set_limit\('max_data_bytes'/);
    const noKey = await sqlError(() => sql`select * from tributary.send_many('lanes', array[${j({ n: 1 })}::text::jsonb, ${j({ n: 2 })}::text::jsonb], array['k', null])`);
    expect(noKey).toMatchObject({ constraint_name: "tributary_queue_option", message: "message 2 of 2: queue 'lanes' is FIFO: give every message a key (its FIFO group)" });
    const longKey = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb], array[${"k".repeat(1025)}])`);
    // Quoted as send quotes a bad option: its first 200 characters.
    expect(longKey).toMatchObject({ constraint_name: "tributary_queue_option", message: expect.stringMatching(/^message 1 of 1: key "k{199} is not a non-empty string of at most 1024 bytes$/) });
    expect(await messageCount()).toBe(before);

    // dead_letter: the others are sent; each breaker is a dead letter, never delivered.
    const mixed = await sql<{ id: string; error: string | null }[]>`
      select * from tributary.send_many('jobs', array[${j({ n: 5 })}::text::jsonb, ${j(big)}::text::jsonb, ${j({ n: 7 })}::text::jsonb, ${j({ n: 8 })}::text::jsonb],
                                        array['e', 'f', '', 'h'], '{"invalid": "dead_letter"}')`;
    expect(mixed.map((r) => r.error)).toEqual([
      null,
      expect.stringMatching(/^not queued: payload is \d+ bytes, over the limit of 100 bytes \(tributary_queue_payload\)$/),
      `not queued: key "" is not a non-empty string of at most 1024 bytes (tributary_queue_option)`,
      null,
    ]);
    expect(new Set(mixed.map((r) => r.id)).size).toBe(4);
    const queued = await sql<{ id: string; n: number }[]>`
      select id::text, (payload ->> 'n')::int as n from tributary.queue_messages where receipt is null order by id`;
    expect(queued).toEqual([{ id: mixed[0]!.id, n: 5 }, { id: mixed[3]!.id, n: 8 }]);
    const dead = await sql<{ id: string; key: string; payload: unknown; deliveries: number; last_error: string; history: unknown[] }[]>`
      select id::text, key, payload, deliveries, last_error, history from tributary.queue_dead_letters order by id`;
    expect(dead).toEqual([
      { id: mixed[1]!.id, key: "f", payload: big, deliveries: 0, last_error: mixed[1]!.error, history: [] },
      { id: mixed[2]!.id, key: "", payload: { n: 7 }, deliveries: 0, last_error: mixed[2]!.error, history: [] },
    ]);
    await eventually("the notifications", () => jobs.seen.some((n) => n.id === mixed[3]!.id), 5_000);
    expect(jobs.seen.filter((n) => mixed.some((r) => r.id === n.id)).map((n) => [n.id, n.state, n.deliveries]))
      .toEqual([[mixed[0]!.id, "queued", 0], [mixed[1]!.id, "dead", 0], [mixed[2]!.id, "dead", 0], [mixed[3]!.id, "queued", 0]]);
    expect(jobs.seen.filter((n) => sent.some((r) => r.id === n.id) && n.state === "queued")).toHaveLength(3);

    // Input that is no message at all is refused whatever `invalid` says.
    const sqlNull = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb, null], null, '{"invalid": "dead_letter"}')`);
    expect(sqlNull).toMatchObject({ constraint_name: "tributary_queue_payload", message: expect.stringMatching(/^message 2 of 2: payload must not be SQL NULL/) });
    const shape = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb], array['a', 'b'])`);
    expect(shape).toMatchObject({ constraint_name: "tributary_queue_option", message: expect.stringMatching(/1 payloads but 2 keys/) });
    const mode = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb], null, '{"invalid": "skip"}')`);
    expect(mode).toMatchObject({ constraint_name: "tributary_queue_option", message: expect.stringMatching(/^option invalid: "skip" is not 'raise'/) });
    const unknown = await sqlError(() => sql`select * from tributary.send_many('jobs', array[${j({ n: 1 })}::text::jsonb], null, '{"delay": 5}')`);
    expect(unknown.message).toMatch(/^unknown send_many option 'delay': the options are invalid$/);
    expect(await sql`select * from tributary.send_many('jobs', '{}')`).toEqual([]);
  });

  it("send_many follows the privilege model: writers and workers with a send grant may call it, a feeder's role may set fed events aside, PUBLIC may not", async () => {
    db = await createTestDatabase(backend);
    const suffix = randomBytes(4).toString("hex");
    const role = { writer: `t_${suffix}_writer`, feeder: `t_${suffix}_feeder`, nobody: `t_${suffix}_nobody` };
    await db.sql.unsafe(`
      create role ${role.writer} login in role tributary_writer;
      create role ${role.feeder} login in role tributary_worker, tributary_reader;
      create role ${role.nobody} login;`);
    const connections: Sql[] = [];
    cleanups.push(() => Promise.all(connections.map((c) => c.end({ timeout: 1 }))));
    afterDrop.push(async () => {
      const admin = postgres(backend.serverUrl, { max: 1, onnotice: () => {} });
      try {
        for (const name of Object.values(role)) await admin.unsafe(`drop role if exists ${name}`);
      } finally {
        await admin.end();
      }
    });
    const as = (name: string): Sql => {
      const url = new URL(db.url);
      url.username = name;
      const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
      connections.push(sql);
      return sql;
    };
    await createQueue(db.sql, "emails");
    await createQueue(db.sql, "fed");
    await db.sql`select tributary.set_limit('max_data_bytes', 100)`;
    await db.sql`select tributary.grant_queue(${role.writer}, 'emails', 'send')`;
    await db.sql`select tributary.grant_queue(${role.feeder}, 'fed', 'send')`;
    await db.sql`select tributary.grant_queue(${role.feeder}, 'fed', 'work')`;

    const acl = await db.sql<{ grantee: string }[]>`
      select coalesce(r.rolname, 'PUBLIC') as grantee
        from pg_proc p cross join lateral aclexplode(p.proacl) a left join pg_roles r on r.oid = a.grantee
       where p.oid = 'tributary.send_many(text, jsonb[], text[], jsonb)'::regprocedure and a.privilege_type = 'EXECUTE'
       order by 1`;
    expect(acl.map((a) => a.grantee)).toEqual(expect.arrayContaining(["tributary_admin", "tributary_worker", "tributary_writer"]));
    expect(acl.map((a) => a.grantee)).not.toContain("PUBLIC");

    const writer = as(role.writer);
    const [one] = await writer<{ id: string; error: null }[]>`select * from tributary.send_many('emails', array[${j({ to: "a" })}::text::jsonb])`;
    expect(one!.error).toBeNull();
    const denied = await sqlError(() => writer`select * from tributary.send_many('fed', array[${j({ to: "a" })}::text::jsonb])`);
    expect(denied).toMatchObject({ code: "42501", message: expect.stringMatching(`role ${role.writer} may not use queue 'fed'`) });

    // The feeder's path: a refused message becomes a dead letter under the feeder's own rights.
    const feeder = as(role.feeder);
    const fed = await feeder<{ id: string; error: string | null }[]>`
      select * from tributary.send_many('fed', array[${j({ n: 1 })}::text::jsonb, ${j({ pad: "x".repeat(100) })}::text::jsonb], array['k', 'k'], '{"invalid": "dead_letter"}')`;
    expect(fed.map((r) => r.error === null)).toEqual([true, false]);
    expect(await db.sql`select 1 from tributary.queue_dead_letters where queue = 'fed' and id = ${fed[1]!.id}`).toHaveLength(1);

    const nobody = as(role.nobody);
    const refused = await sqlError(() => nobody`select * from tributary.send_many('emails', array[${j({ to: "a" })}::text::jsonb])`);
    expect(refused.code).toBe("42501");
  });
});
