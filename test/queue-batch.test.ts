/**
 * tributary.send_batch (migration 0015) and sendBatch: many messages in one
 * statement, each with send()'s options and send()'s rules. The ids come back
 * in array order and ascend with it (a FIFO key's messages keep their order,
 * invariant 10); a dedupe key pending, or repeated within the batch, returns
 * the message it names; a message that breaks a rule refuses the whole call,
 * naming its position, and queues nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { claim, createQueue, send, sendBatch, TributaryQueueError } from "@tributary/client";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";

async function sqlError(run: () => Promise<unknown>): Promise<{ message: string; constraint_name?: string; hint?: string }> {
  const error = await run().then(() => null, (e: unknown) => e);
  expect(error, "expected an error").not.toBeNull();
  return error as { message: string; constraint_name?: string; hint?: string };
}

const batch = (sql: Sql, queue: string, messages: unknown) =>
  sql<{ ids: string[] }[]>`select tributary.send_batch(${queue}, ${JSON.stringify(messages)}::text::jsonb)::text[] as ids`.then(([r]) => r!.ids);

const queued = (sql: Sql) =>
  sql<{ id: string; key: string | null; dedupe_key: string | null; payload: unknown; headers: unknown; delayed: boolean }[]>`
    select id::text, key, dedupe_key, payload, headers, visible_at > now() + interval '1 minute' as delayed
      from tributary.queue_messages order by id`;

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`send_batch [${backend.name}]`, () => {
    let db: TestDatabase;
    afterEach(async () => {
      await db?.drop();
    });

    it("queues every message in array order with its own options and returns the ids in that order", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const ids = await batch(db.sql, "jobs", [
        { payload: { n: 1 } },
        { payload: null, key: "k" },
        { payload: [3], delay: "2 hours", headers: { tenant: "eu" } },
        { payload: "four", run_at: "2100-01-01T00:00:00Z", key: null, delay: null },
        { payload: 5 },
      ]);
      expect(ids).toHaveLength(5);
      expect(ids.map(Number)).toEqual([...ids.map(Number)].sort((a, b) => a - b)); // ascending with the array
      expect(await queued(db.sql)).toEqual([
        { id: ids[0], key: null, dedupe_key: null, payload: { n: 1 }, headers: {}, delayed: false },
        { id: ids[1], key: "k", dedupe_key: null, payload: null, headers: {}, delayed: false },
        { id: ids[2], key: null, dedupe_key: null, payload: [3], headers: { tenant: "eu" }, delayed: true },
        { id: ids[3], key: null, dedupe_key: null, payload: "four", headers: {}, delayed: true },
        { id: ids[4], key: null, dedupe_key: null, payload: 5, headers: {}, delayed: false },
      ]);
      // Only the visible ones are claimable, oldest first.
      const claimed = await claim(db.sql, "jobs", "w", { max: 10 });
      expect(claimed.map((m) => m.id)).toEqual([ids[0], ids[1], ids[4]]);
      expect(await batch(db.sql, "jobs", [])).toEqual([]);
    });

    it("takes what send takes: JSON nulls are absent options, inside headers too", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const options = { headers: { tenant: "eu", trace: null }, key: null, dedupe_key: null, delay: null, run_at: null };
      const [sent] = await db.sql<{ id: string }[]>`select tributary.send('jobs', '1', ${JSON.stringify(options)}::text::jsonb)::text as id`;
      const [batched] = await batch(db.sql, "jobs", [{ payload: 1, ...options }]);
      const rows = await queued(db.sql);
      expect(rows.map((r) => r.id)).toEqual([sent!.id, batched]);
      for (const row of rows) expect(row).toMatchObject({ key: null, dedupe_key: null, headers: { tenant: "eu" }, delayed: false });
    });

    it("a dedupe key pending, or repeated in the batch, returns the message it names and queues nothing more", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const pending = await send(db.sql, "jobs", { n: 0 }, { dedupeKey: "d0" });
      const ids = await batch(db.sql, "jobs", [
        { payload: { n: 1 }, dedupe_key: "d1" },
        { payload: { n: 2 } },
        { payload: { n: 3 }, dedupe_key: "d0" },
        { payload: { n: 4 }, dedupe_key: "d1" },
        { payload: { n: 5 } },
      ]);
      const rows = await queued(db.sql);
      expect(rows.map((r) => r.payload)).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 5 }]);
      const idOf = (n: number) => rows.find((r) => (r.payload as { n: number }).n === n)!.id;
      expect(ids).toEqual([idOf(1), idOf(2), pending, idOf(1), idOf(5)]);
      // A later batch of the same keys returns the same messages.
      expect(await batch(db.sql, "jobs", [{ payload: 9, dedupe_key: "d1" }, { payload: 9, dedupe_key: "d0" }])).toEqual([idOf(1), pending]);
      expect(await queued(db.sql)).toHaveLength(4);
    });

    it("on a FIFO queue a key's messages are delivered in array order", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('orders', '{"fifo": true}')`;
      const ids = await batch(db.sql, "orders", Array.from({ length: 6 }, (_, i) => ({ payload: { i }, key: i % 2 === 0 ? "a" : "b" })));
      const delivered: string[] = [];
      for (let round = 0; round < 3; round++) {
        const claimed = await claim(db.sql, "orders", "w", { max: 10 });
        expect(claimed.map((m) => m.key)).toEqual(["a", "b"]); // one in flight per key
        delivered.push(...claimed.map((m) => m.id));
        for (const m of claimed) await db.sql`select tributary.ack('orders', ${m.receipt}::uuid)`;
      }
      expect(delivered).toEqual(ids);
    });

    it("refuses the whole batch when one message breaks a rule, naming it and the rule, and queues nothing", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      await db.sql`select tributary.create_queue('orders', '{"fifo": true}')`;
      await db.sql`select tributary.set_limit('max_data_bytes', 1000)`;
      const ok = { payload: { n: 1 } };
      const cases: Array<[string, unknown, string, RegExp]> = [
        ["jobs", [ok, { n: 2 }], "tributary_queue_payload", /^send_batch message 2 of 2: has no "payload"/],
        ["jobs", [ok, ok, 7], "tributary_queue_payload", /^send_batch message 3 of 3: is 7, not an object/],
        ["jobs", [ok, { payload: 1, priority: 3 }], "tributary_queue_option", /^send_batch message 2 of 2: unknown send option 'priority': the options are delay, run_at, key, dedupe_key, headers/],
        ["jobs", [{ payload: "x".repeat(2000) }, ok], "tributary_queue_payload", /^send_batch message 1 of 2: payload is 2002 bytes, over the limit of 1000 bytes/],
        ["jobs", [ok, { payload: 1, key: "" }], "tributary_queue_option", /^send_batch message 2 of 2: option key: "" is not a non-empty string/],
        ["jobs", [ok, { payload: 1, dedupe_key: 5 }], "tributary_queue_option", /^send_batch message 2 of 2: option dedupe_key: 5 is not a non-empty string/],
        ["orders", [{ payload: 1, key: "a" }, { payload: 2 }], "tributary_queue_option", /^send_batch message 2 of 2: queue 'orders' is FIFO: give every message a key/],
        // These are found by send's own checks as the values are computed (the slow path names the message).
        ["jobs", [ok, ok, { payload: 1, delay: "soon" }], "tributary_queue_option", /^send_batch message 3 of 3: option delay: "soon" is not a duration/],
        ["jobs", [ok, { payload: 1, delay: 5, run_at: "2100-01-01" }], "tributary_queue_option", /^send_batch message 2 of 2: give delay or run_at, not both/],
        ["jobs", [{ payload: 1, run_at: "infinity" }], "tributary_queue_option", /^send_batch message 1 of 1: option run_at: "infinity" is not a finite timestamp/],
        ["jobs", [ok, { payload: 1, headers: { tenant: 5 } }], "tributary_queue_option", /^send_batch message 2 of 2: send option headers: header 'tenant' is number, not text/],
        ["jobs", { payload: 1 }, "tributary_queue_payload", /^send_batch takes a JSON array of messages/],
        // The first element that breaks a rule is named, whichever kind of rule; and send's error for an element that breaks two.
        ["jobs", [{ payload: 1, delay: "soon" }, { payload: 2, key: "" }], "tributary_queue_option", /^send_batch message 1 of 2: option delay: "soon"/],
        ["jobs", [ok, { payload: 1, key: 5, dedupe_key: 5 }], "tributary_queue_option", /^send_batch message 2 of 2: option key: 5 is not/],
      ];
      for (const [queue, messages, rule, message] of cases) {
        const error = await sqlError(() => batch(db.sql, queue, messages));
        expect({ rule: error.constraint_name, message: error.message }).toMatchObject({ rule, message: expect.stringMatching(message) });
      }
      const tooBig = await sqlError(() => batch(db.sql, "jobs", [{ payload: "x".repeat(2000) }]));
      expect(tooBig.hint).toMatch(/raise tributary.max_data_bytes/);
      expect(await queued(db.sql)).toEqual([]);
      const unknown = await sqlError(() => batch(db.sql, "nowhere", [ok]));
      expect(unknown.constraint_name).toBe("tributary_queue_unknown");
    });

    it.runIf(backend.version >= 16)("checks options without a subtransaction that takes a transaction id: a transaction of many batches does not overflow the subtransaction cache", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const [row] = await db.sql.begin(async (tx) => {
        for (let i = 0; i < 70; i++) await batch(tx as unknown as Sql, "jobs", [{ payload: i, delay: 5, headers: { n: String(i) } }, { payload: i, run_at: "2100-01-01T00:00:00Z" }]);
        return tx<{ subxact_count: number; subxact_overflowed: boolean }[]>`
          select s.subxact_count, s.subxact_overflowed
            from pg_stat_get_backend_idset() b, pg_stat_get_backend_subxact(b) s
           where pg_stat_get_backend_pid(b) = pg_backend_pid()`;
      });
      expect(row).toEqual({ subxact_count: 0, subxact_overflowed: false });
      expect(await queued(db.sql)).toHaveLength(140);
    });

    it("announces every new message to job watchers once (notify_states), and none for a deduplicated one", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"notify_states": true}')`;
      const states: Array<{ id: number; state: string }> = [];
      const listener = await db.sql.listen("tributary_jobs", (payload) => states.push(JSON.parse(payload) as { id: number; state: string }));
      try {
        const ids = await batch(db.sql, "jobs", [{ payload: 1 }, { payload: 2, dedupe_key: "d" }, { payload: 3, dedupe_key: "d" }]);
        // NOTIFY is delivered at commit, in order; a marker sent after it arrives after them.
        await db.sql`select pg_notify('tributary_jobs', '{"id": 0, "state": "marker"}')`;
        await expect.poll(() => states.at(-1)?.state, { timeout: 10_000 }).toBe("marker");
        expect(states.slice(0, -1).map((s) => [String(s.id), s.state])).toEqual([[ids[0], "queued"], [ids[1], "queued"]]);
      } finally {
        await listener.unlisten();
      }
    });

    it("sendBatch: send()'s options in TypeScript, the ids in order, a rule's error as TributaryQueueError, nothing queued on error", async () => {
      db = await createTestDatabase(backend);
      await createQueue(db.sql, "jobs");
      const runAt = new Date(Date.now() + 3_600_000);
      const ids = await sendBatch(db.sql, "jobs", [
        { payload: { n: 1 }, key: "k" },
        { payload: { n: 2 }, runAt, headers: { tenant: "eu" } },
        { payload: { n: 3 }, dedupeKey: "d", delay: 7200 },
        { payload: undefined },
      ]);
      const rows = await queued(db.sql);
      expect(rows.map((r) => r.id)).toEqual(ids);
      expect(rows).toMatchObject([
        { key: "k", payload: { n: 1 }, delayed: false },
        { payload: { n: 2 }, headers: { tenant: "eu" }, delayed: true },
        { payload: { n: 3 }, dedupe_key: "d", delayed: true },
        { payload: null },
      ]);
      expect(await sendBatch(db.sql, "jobs", [])).toEqual([]);
      const error = await sendBatch(db.sql, "jobs", [{ payload: 1 }, { payload: 2, delay: -1 }]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TributaryQueueError);
      expect(error).toMatchObject({ code: "INVALID_OPTION", message: expect.stringMatching(/^send_batch message 2 of 2: option delay must not be negative/) });
      // Inside a transaction it commits or rolls back with the caller's rows.
      await db.sql.begin(async (tx) => {
        await sendBatch(tx, "jobs", [{ payload: "in tx" }]);
        await tx`select 1/0`;
      }).catch(() => undefined);
      expect(await queued(db.sql)).toHaveLength(4);
    });
  });
}
