/**
 * Queues through the SQL API (docs/ARCHITECTURE.md invariant 10): one worker at a time
 * per message until ack / expiry / dead letter; retries with backoff; dead
 * letters after exactly max_deliveries; FIFO exclusivity and order; delays
 * never early; dedupe keys; stale receipts; bad input. Times are the
 * database's. Queues do not depend on the decoder: once per server.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Sql, TransactionSql } from "postgres";
import { ack, ackBatch, claim as claimMessages, createQueue, deadLetters, nack, redrive, release, send, TributaryQueueError } from "@tributary/client";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Claimed {
  id: string;
  receipt: string;
  payload: { n: number };
  key: string | null;
  deliveries: number;
}

const claim = (sql: Sql, queue: string, worker = "w", max = 1, visibility: string | null = null) =>
  sql<Claimed[]>`select * from tributary.claim(${queue}, ${worker}, ${max}, ${visibility}::interval)`;

/** The database's clock now (not the transaction's start). */
async function databaseClock(sql: Sql | TransactionSql): Promise<Date> {
  const [row] = await sql<{ at: Date }[]>`select clock_timestamp() as at`;
  return row!.at;
}

async function sqlError(run: () => Promise<unknown>): Promise<{ message: string; constraint_name?: string; hint?: string }> {
  const error = await run().then(() => null, (e: unknown) => e);
  expect(error, "expected an error").not.toBeNull();
  return error as { message: string; constraint_name?: string; hint?: string };
}

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`queues [${backend.name}]`, () => {
    let db: TestDatabase;
    afterEach(async () => {
      await db?.drop();
    });

    it("delivers a message to one worker at a time; ack deletes it; a second ack is a stale receipt", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const { id } = (await db.sql`select tributary.send('jobs', '{"n": 1}') as id`)[0]!;
      const [first] = await claim(db.sql, "jobs", "a");
      expect(first).toMatchObject({ id, payload: { n: 1 }, key: null, deliveries: 1 });
      expect(await claim(db.sql, "jobs", "b")).toEqual([]); // in flight: invisible to others
      await db.sql`select tributary.ack('jobs', ${first!.receipt})`;
      expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0);
      const stale = await sqlError(() => db.sql`select tributary.ack('jobs', ${first!.receipt})`);
      expect(stale.constraint_name).toBe("tributary_queue_stale_receipt");
      expect(stale.message).toMatch(/receipt .* of queue 'jobs' is stale/);
    });

    it("ack_batch acknowledges current receipts in one statement and leaves stale ones out; release gives claims back uncounted", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"visibility_timeout": 1}')`;
      await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, 6) g`;
      const claimed = await claim(db.sql, "jobs", "a", 6);
      expect(claimed.map((m) => m.payload.n)).toEqual([1, 2, 3, 4, 5, 6]);
      // A receipt names its message: the id in its first 64 bits, then 64 random bits.
      for (const m of claimed) expect(BigInt(`0x${m.receipt.replaceAll("-", "").slice(0, 16)}`)).toBe(BigInt(m.id));
      expect(new Set(claimed.map((m) => m.receipt.replaceAll("-", "").slice(16))).size).toBe(6);

      const forged = `${claimed[2]!.receipt.slice(0, 24)}000000000000`; // message 3's id, wrong random half
      const acked = await ackBatch(db.sql, "jobs", [claimed[0]!.receipt, claimed[1]!.receipt, forged]);
      expect(acked.sort()).toEqual([claimed[0]!.receipt, claimed[1]!.receipt].sort());
      expect(await ackBatch(db.sql, "jobs", [claimed[0]!.receipt])).toEqual([]); // already acknowledged: stale
      expect((await sqlError(() => db.sql`select tributary.ack('jobs', ${forged})`)).constraint_name).toBe("tributary_queue_stale_receipt");

      // Given back untouched: claimable at once, the claim not counted, its receipt stale.
      expect(await release(db.sql, "jobs", [claimed[2]!.receipt, claimed[3]!.receipt, forged])).toBe(2);
      expect((await sqlError(() => db.sql`select tributary.ack('jobs', ${claimed[2]!.receipt})`)).constraint_name).toBe("tributary_queue_stale_receipt");
      const again = await claim(db.sql, "jobs", "b", 6);
      expect(again.map((m) => [m.payload.n, m.deliveries])).toEqual([[3, 1], [4, 1]]);
      await sleep(1_100); // messages 5 and 6 expire: the next claim takes them back first, as second deliveries
      const expired = await claim(db.sql, "jobs", "c", 6);
      expect(expired.map((m) => [m.payload.n, m.deliveries])).toEqual([[3, 2], [4, 2], [5, 2], [6, 2]]);
      expect((await ackBatch(db.sql, "jobs", expired.map((m) => m.receipt))).length).toBe(4);
      expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0);
      expect((await sqlError(() => db.sql`select tributary.ack_batch('nope', array[${forged}]::uuid[])`)).constraint_name).toBe("tributary_queue_unknown");
    });

    it("a claim, an extend and a release rewrite no index entry (HOT updates): churn does not grow the indexes", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, 200) g`;
      const stats = async () => {
        await db.sql`select pg_stat_force_next_flush()`;
        const [row] = await db.sql<{ upd: string; hot: string }[]>`
          select n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables where relid = 'tributary.queue_messages'::regclass`;
        return { upd: Number(row!.upd), hot: Number(row!.hot) };
      };
      const before = await stats();
      const claimed: Claimed[] = [];
      for (let i = 0; i < 20; i++) claimed.push(...(await claim(db.sql, "jobs", "a", 10)));
      for (const m of claimed.slice(0, 50)) await db.sql`select tributary.extend('jobs', ${m.receipt}, '1 minute')`;
      await release(db.sql, "jobs", claimed.slice(150).map((m) => m.receipt));
      const after = await stats();
      expect(after.upd - before.upd).toBe(300);
      // HOT needs room on the page. Each of the 200 claims is its row's first
      // update and fits in the room fillfactor 50 leaves: all of them must be
      // HOT. The 100 second updates (extend, release) need the first versions
      // pruned, which a snapshot elsewhere on the shared test cluster (another
      // test file creating its slot) can hold back: those may find no room.
      expect(after.hot - before.hot).toBeGreaterThanOrEqual(200);
    });

    it("redelivers a message whose visibility timeout expired; the first receipt is then stale", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"visibility_timeout": 0.3}')`;
      await db.sql`select tributary.send('jobs', '{"n": 1}')`;
      const [first] = await claim(db.sql, "jobs", "a");
      expect(await claim(db.sql, "jobs", "b")).toEqual([]);
      await sleep(400);
      const [second] = await claim(db.sql, "jobs", "b");
      expect(second).toMatchObject({ id: first!.id, deliveries: 2 });
      expect((await sqlError(() => db.sql`select tributary.nack('jobs', ${first!.receipt})`)).constraint_name).toBe("tributary_queue_stale_receipt");
      const { history } = (await db.sql`select history from tributary.queue_messages`)[0]!;
      expect(history).toEqual([expect.objectContaining({ worker: "a", error: "visibility timeout expired" })]);
      await db.sql`select tributary.ack('jobs', ${second!.receipt})`;
    });

    it("extend() keeps a long handler's claim; nack() retries after a backoff", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"visibility_timeout": 0.3, "backoff": {"base": 0.4, "jitter": 0}}')`;
      await db.sql`select tributary.send('jobs', '{"n": 1}')`;
      const [first] = await claim(db.sql, "jobs");
      await db.sql`select tributary.extend('jobs', ${first!.receipt}, '2 seconds')`;
      await sleep(400);
      expect(await claim(db.sql, "jobs", "other")).toEqual([]); // still ours
      await db.sql`select tributary.nack('jobs', ${first!.receipt}, 'boom')`;
      expect(await claim(db.sql, "jobs")).toEqual([]); // backing off (0.4 s)
      await sleep(500);
      const [again] = await claim(db.sql, "jobs");
      expect(again).toMatchObject({ deliveries: 2 });
      const { last_error } = (await db.sql`select last_error from tributary.queue_messages`)[0]!;
      expect(last_error).toBe("boom");
    });

    it("moves a poison message to the dead letters after exactly max_deliveries, with its history; redrive brings it back", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"max_deliveries": 3, "visibility_timeout": 0.2}')`;
      const { id } = (await db.sql`select tributary.send('jobs', '{"n": 7}') as id`)[0]!;
      let deliveries = 0;
      // Fails twice (nack), then its third claim expires: three deliveries.
      for (let i = 0; i < 2; i++) {
        const [m] = await claim(db.sql, "jobs");
        deliveries++;
        await db.sql`select tributary.nack('jobs', ${m!.receipt}, ${`failure ${i + 1}`}, '0 seconds')`;
      }
      const [third] = await claim(db.sql, "jobs");
      deliveries++;
      expect(third!.deliveries).toBe(3);
      await sleep(300);
      expect(await claim(db.sql, "jobs")).toEqual([]); // not a fourth delivery: buried instead
      const [dead] = await db.sql`select id, deliveries, last_error, history from tributary.queue_dead_letters`;
      expect(dead).toMatchObject({ id, deliveries: 3, last_error: "visibility timeout expired" });
      expect((dead!.history as Array<{ error: string }>).map((h) => h.error)).toEqual(["failure 1", "failure 2", "visibility timeout expired"]);
      expect(deliveries).toBe(3);

      const { n } = (await db.sql`select tributary.redrive('jobs') as n`)[0]!;
      expect(n).toBe(1);
      const [back] = await claim(db.sql, "jobs");
      expect(back).toMatchObject({ payload: { n: 7 }, deliveries: 1 });
    });

    it("a nack on the last allowed delivery buries the message at once with the error", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs', '{"max_deliveries": 1}')`;
      await db.sql`select tributary.send('jobs', '{"n": 1}')`;
      const [m] = await claim(db.sql, "jobs");
      await db.sql`select tributary.nack('jobs', ${m!.receipt}, 'no such customer')`;
      const [dead] = await db.sql`select last_error, deliveries from tributary.queue_dead_letters`;
      expect(dead).toEqual({ last_error: "no such customer", deliveries: 1 });
    });

    it("never delivers a delayed message early (database clock)", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      await db.sql`select tributary.send('jobs', '{"n": 1}', '{"delay": 0.5}')`;
      await db.sql`select tributary.send('jobs', '{"n": 2}', jsonb_build_object('run_at', now() + interval '0.8 seconds'))`;
      const started = Date.now();
      const seen: number[] = [];
      while (seen.length < 2) {
        const claimed = await claim(db.sql, "jobs", "w", 10);
        for (const m of claimed) {
          const { early } = (await db.sql`select enqueued_at + interval '0.5 seconds' > now() as early from tributary.queue_messages where id = ${m.id}`)[0]!;
          expect(early).toBe(false);
          seen.push(m.payload.n);
          await db.sql`select tributary.ack('jobs', ${m.receipt})`;
        }
        await sleep(20);
      }
      expect(seen).toEqual([1, 2]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    });

    it("dedupe_key: a second send while the first is pending returns the first id; after ack, a new message", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const { a } = (await db.sql`select tributary.send('jobs', '{"n": 1}', '{"dedupe_key": "order-1"}') as a`)[0]!;
      const { b } = (await db.sql`select tributary.send('jobs', '{"n": 2}', '{"dedupe_key": "order-1"}') as b`)[0]!;
      expect(b).toBe(a);
      const [m] = await claim(db.sql, "jobs");
      const { c } = (await db.sql`select tributary.send('jobs', '{"n": 3}', '{"dedupe_key": "order-1"}') as c`)[0]!;
      expect(c).toBe(a); // still pending (in flight)
      await db.sql`select tributary.ack('jobs', ${m!.receipt})`;
      const { d } = (await db.sql`select tributary.send('jobs', '{"n": 4}', '{"dedupe_key": "order-1"}') as d`)[0]!;
      expect(d).not.toBe(a);
    });

    it("FIFO: 16 concurrent workers never hold two messages of a key at once, and see each key in send order", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('fifo', '{"fifo": true}')`;
      const keys = 12;
      const perKey = 15;
      for (let i = 0; i < perKey; i++) {
        await db.sql`select tributary.send('fifo', jsonb_build_object('n', ${i}::int), jsonb_build_object('key', 'k' || g)) from generate_series(0, ${keys - 1}) g`;
      }
      const inFlight = new Set<string>();
      const order = new Map<string, number[]>();
      let violations = 0;
      let done = 0;
      await Promise.all(Array.from({ length: 16 }, async (_, w) => {
        while (done < keys * perKey) {
          const claimed = await claim(db.sql, "fifo", `w${w}`, 3);
          if (claimed.length === 0) {
            await sleep(5);
            continue;
          }
          await Promise.all(claimed.map(async (m) => {
            if (inFlight.has(m.key!)) violations++;
            inFlight.add(m.key!);
            order.set(m.key!, [...(order.get(m.key!) ?? []), m.payload.n]);
            await sleep(Math.random() * 8);
            inFlight.delete(m.key!);
            await db.sql`select tributary.ack('fifo', ${m.receipt})`;
            done++;
          }));
        }
      }));
      expect(violations).toBe(0);
      for (const [, seen] of order) expect(seen).toEqual(Array.from({ length: perKey }, (_, i) => i));
    });

    it("16 workers, a quarter of claims abandoned mid-handler (a crashed worker): one claim at a time, every message acked or buried after exactly max_deliveries, none lost", async () => {
      db = await createTestDatabase(backend);
      const visibilitySeconds = 0.3;
      const maxDeliveries = 20;
      await db.sql`select tributary.create_queue('jobs', ${JSON.stringify({ visibility_timeout: visibilitySeconds, max_deliveries: maxDeliveries })}::text::jsonb)`;
      const total = 400;
      await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, ${total}) g`;
      // Times are the database's clock in microseconds (extract gives numeric: exact, where a Date keeps milliseconds).
      const claimExpiries = new Map<string, number[]>(); // message id -> the expiry of each of its claims
      const completed = new Set<number>();
      const staleBeforeExpiry: string[] = [];
      await Promise.all(Array.from({ length: 16 }, async (_, w) => {
        for (;;) {
          const claimed = await db.sql<{ id: string; receipt: string; n: number; until_us: string }[]>`
            select id::text, receipt::text, (payload->>'n')::int as n, (extract(epoch from visible_until) * 1000000)::bigint::text as until_us
              from tributary.claim('jobs', ${`w${w}`}, 5)`;
          if (claimed.length === 0) {
            // All that is left is in flight: the next claim can succeed when the first of those
            // claims expires (the visibility timeout says when, not a guess at this machine's speed).
            const [left] = await db.sql<{ n: number; wait_ms: number | null }[]>`
              select count(*)::int as n, (extract(epoch from min(locked_until) - clock_timestamp()) * 1000)::float8 as wait_ms
                from tributary.queue_messages where queue = 'jobs'`;
            if (left!.n === 0) return;
            await sleep(Math.min(visibilitySeconds * 1000, Math.max(5, left!.wait_ms ?? 0)));
            continue;
          }
          for (const m of claimed) {
            claimExpiries.set(m.id, [...(claimExpiries.get(m.id) ?? []), Number(m.until_us)]);
            if (Math.random() < 0.25) continue; // dies before acking: the claim expires
            // A loaded machine can ack after the visibility timeout: the receipt is then stale and
            // the message another worker's, as it must be (invariant 10) — counted as a delivery.
            const acked = await db.sql`select tributary.ack('jobs', ${m.receipt})`.then(() => true, (e: Error) => {
              if (/is stale/.test(e.message)) return false;
              throw e;
            });
            if (acked) {
              completed.add(m.n);
              continue;
            }
            // Stale only because the claim expired: a new claim took effect at or after its expiry,
            // before the ack was refused, so the database's clock is past that expiry now.
            const [clock] = await db.sql<{ now_us: string }[]>`select (extract(epoch from clock_timestamp()) * 1000000)::bigint::text as now_us`;
            if (Number(clock!.now_us) < Number(m.until_us)) staleBeforeExpiry.push(m.id);
          }
        }
      }));
      expect(staleBeforeExpiry).toEqual([]);
      // One worker at a time: each claim of a message took effect at or after the previous one expired.
      const overlapping = [...claimExpiries].filter(([, expiries]) =>
        expiries.sort((a, b) => a - b).some((until, i) => i > 0 && until - expiries[i - 1]! < visibilitySeconds * 1_000_000));
      expect(overlapping).toEqual([]);
      // None lost: acked, or — when every delivery was abandoned or acked too late — buried after exactly max_deliveries.
      const dead = await db.sql<{ id: string; n: number; deliveries: number }[]>`
        select id::text, (payload->>'n')::int as n, deliveries from tributary.queue_dead_letters where queue = 'jobs'`;
      for (const d of dead) {
        expect(d.deliveries).toBe(maxDeliveries);
        expect(claimExpiries.get(d.id)).toHaveLength(maxDeliveries);
        expect(completed.has(d.n)).toBe(false);
      }
      expect(completed.size + dead.length).toBe(total);
      expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0);
    });

    it("TypeScript client: send commits or rolls back with the caller's transaction; typed errors; dead letters and redrive", async () => {
      db = await createTestDatabase(backend);
      await createQueue(db.sql, "mail", { visibilityTimeout: 5, maxDeliveries: 1 });
      class Rollback extends Error {}
      await db.sql.begin(async (tx) => {
        await send(tx, "mail", { to: "a@example.com" });
        throw new Rollback();
      }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
      expect(await claimMessages(db.sql, "mail", "w")).toEqual([]); // rolled back with the business rows
      await db.sql.begin((tx) => send(tx, "mail", { to: "b@example.com" }, { key: "b" }));
      const [m] = await claimMessages<{ to: string }>(db.sql, "mail", "w", { max: 10 });
      expect(m).toMatchObject({ payload: { to: "b@example.com" }, key: "b", deliveries: 1 });
      expect(m!.visibleUntil.getTime()).toBeGreaterThan(m!.enqueuedAt.getTime());
      await nack(db.sql, "mail", m!.receipt, { error: "smtp 550" });
      const error = await ack(db.sql, "mail", m!.receipt).then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(TributaryQueueError);
      expect((error as TributaryQueueError).code).toBe("STALE_RECEIPT");
      const [dead] = await deadLetters<{ to: string }>(db.sql, "mail");
      expect(dead).toMatchObject({ payload: { to: "b@example.com" }, lastError: "smtp 550", deliveries: 1 });
      expect(await redrive(db.sql, "mail", [dead!.id])).toBe(1);
      expect(await claimMessages(db.sql, "mail", "w")).toHaveLength(1);
      const unknown = await send(db.sql, "nope", {}).then(() => null, (e: unknown) => e);
      expect((unknown as TributaryQueueError).code).toBe("UNKNOWN_QUEUE");
      const feed = await db.sql`select tributary.create_queue('fed', '{"stream": "bad name"}')`.then(() => null, (e: { message: string }) => e.message);
      expect(feed).toMatch(/invalid stream name 'bad name'/);
    });

    it("bad input gets an error that names the rule: unknown queue, bad options, negative delay, oversized payload", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const cases: Array<[() => Promise<unknown>, string, RegExp]> = [
        [() => db.sql`select tributary.send('nope', '{}')`, "tributary_queue_unknown", /queue 'nope' does not exist/],
        [() => db.sql`select tributary.create_queue('bad name')`, "tributary_queue_name", /invalid queue name 'bad name'/],
        [() => db.sql`select tributary.create_queue(${"q".repeat(201)})`, "tributary_queue_name", /a queue name is 1 to 200 characters/],
        [() => db.sql`select tributary.create_queue('')`, "tributary_queue_name", /invalid queue name ''/],
        [() => db.sql`select tributary.create_queue('q', '{"visibilty_timeout": 3}')`, "tributary_queue_option", /unknown queue option 'visibilty_timeout'/],
        [() => db.sql`select tributary.send('jobs', '{}', '{"delay": -1}')`, "tributary_queue_option", /option delay must not be negative/],
        [() => db.sql`select tributary.send('jobs', '{}', '{"delay": "soon"}')`, "tributary_queue_option", /option delay: "soon" is not a duration/],
        [() => db.sql`select tributary.send('jobs', jsonb_build_object('blob', repeat('x', 1100000)))`, "tributary_queue_payload", /payload is \d+ bytes, over the limit of 1048576 bytes/],
        [() => db.sql`select tributary.claim('jobs', 'w', 0)`, "tributary_queue_option", /max must be 1 to 10000/],
      ];
      for (const [run, rule, message] of cases) {
        const error = await sqlError(run);
        expect(error.constraint_name, error.message).toBe(rule);
        expect(error.message).toMatch(message);
      }
      await db.sql`select tributary.create_queue(${"q".repeat(200)})`; // the longest name
      await db.sql`select tributary.create_queue('fifo', '{"fifo": true}')`;
      expect((await sqlError(() => db.sql`select tributary.send('fifo', '{}')`)).message).toMatch(/queue 'fifo' is FIFO: give every message a key/);
      expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0); // nothing half-sent
    });

    it("options of the wrong JSON type, out of range or unknown (also inside backoff) are refused, naming the option, the value and what is allowed", async () => {
      db = await createTestDatabase(backend);
      await db.sql`select tributary.create_queue('jobs')`;
      const createWith = (options: string) => () => db.sql`select tributary.create_queue('q', ${options}::text::jsonb)`;
      const sendWith = (options: string) => () => db.sql`select tributary.send('jobs', '{}', ${options}::text::jsonb)`;
      const cases: Array<[() => Promise<unknown>, RegExp]> = [
        [createWith('{"max_deliveries": "abc"}'), /^option max_deliveries: "abc" is not a whole number from 1 to 1000000$/],
        [createWith('{"max_deliveries": 1.7}'), /^option max_deliveries: 1\.7 is not a whole number from 1 to 1000000$/],
        [createWith('{"max_deliveries": 0}'), /^option max_deliveries: 0 is not a whole number from 1 to 1000000$/],
        [createWith('{"fifo": "maybe"}'), /^option fifo: "maybe" is not a boolean \(true or false\)$/],
        [createWith('{"notify_states": 1}'), /^option notify_states: 1 is not a boolean/],
        [createWith('{"backoff": {"jitter": "lots"}}'), /^option backoff\.jitter: "lots" is not a number from 0 to 1/],
        [createWith('{"backoff": {"jitter": 1.5}}'), /^option backoff\.jitter: 1\.5 is not a number from 0 to 1/],
        [createWith('{"backoff": "fast"}'), /^option backoff: "fast" is not an object: \{"base": seconds, "max": seconds, "jitter": 0 to 1\}$/],
        [createWith('{"backoff": {"bogus": 1}}'), /^unknown backoff option 'bogus': the options are base, max, jitter$/],
        [createWith('{"backoff": {"base": true}}'), /^option base: true is not a duration/],
        [createWith('{"visibility_timeout": [30]}'), /^option visibility_timeout: \[30\] is not a duration \(seconds, e\.g\. 30, or an interval/],
        [createWith('{"visibility_timeout": "1000 years"}'), /^option visibility_timeout: "1000 years" is not a duration .*at most 100 years/],
        [createWith('{"stream": 5}'), /^option stream: 5 is not a stream name \(a string\)$/],
        [createWith('{"bogus": null}'), /^unknown queue option 'bogus'/],
        [sendWith('{"run_at": "infinity"}'), /^option run_at: "infinity" is not a finite timestamp within 100 years of now$/],
        [sendWith('{"run_at": "-infinity"}'), /^option run_at: "-infinity" is not a finite timestamp/],
        [sendWith('{"run_at": "294277-01-01"}'), /^option run_at: "294277-01-01" is not a timestamp \(ISO 8601 text/],
        [sendWith('{"run_at": 1700000000}'), /^option run_at: 1700000000 is not a timestamp \(ISO 8601 text/],
        [sendWith('{"delay": {"s": 1}}'), /^option delay: \{"s": 1\} is not a duration/],
        [sendWith('{"delay": 1e300}'), /^option delay: 1e\+?300|^option delay: 1000000000000000000000000000000.* is not a duration/],
        [sendWith('{"key": 5}'), /^option key: 5 is not a non-empty string of at most 1024 bytes$/],
        [sendWith('{"key": ""}'), /^option key: "" is not a non-empty string/],
        [sendWith('{"dedupe_key": {"a": 1}}'), /^option dedupe_key: \{"a": 1\} is not a non-empty string of at most 1024 bytes$/],
        [() => db.sql`select tributary.send('jobs', '{}', jsonb_build_object('key', repeat('k', 3000)))`, /^option key: "k{50,}.* is not a non-empty string of at most 1024 bytes$/],
      ];
      for (const [run, message] of cases) {
        const error = await sqlError(run);
        expect({ code: (error as { code?: string }).code, constraint: error.constraint_name }, error.message).toEqual({ code: "22023", constraint: "tributary_queue_option" });
        expect(error.message).toMatch(message);
      }
      expect(await db.sql`select name from tributary.queues`).toEqual([{ name: "jobs" }]); // nothing half-created
      expect(await db.sql`select 1 from tributary.queue_messages`).toHaveLength(0);
      // JSON null still means the default; good values still work.
      await db.sql`select tributary.create_queue('q', '{"max_deliveries": 3, "fifo": null, "backoff": {"base": 0.5, "max": "1 minute", "jitter": 0}}')`;
      const [q] = await db.sql`select max_deliveries, fifo, backoff_base::text, backoff_jitter from tributary.queues where name = 'q'`;
      expect(q).toEqual({ max_deliveries: 3, fifo: false, backoff_base: "00:00:00.5", backoff_jitter: 0 });
      await db.sql`select tributary.send('jobs', '{}', '{"run_at": "2000-01-01T00:00:00Z", "key": "k", "dedupe_key": null}')`;
      expect(await claim(db.sql, "jobs")).toHaveLength(1); // a past run_at is due at once
    });

    it("a FIFO claim that waited for the queue's claim lock still gets its whole visibility timeout, counted from when it took effect", async () => {
      db = await createTestDatabase(backend);
      const visibilitySeconds = 2;
      const holdMs = 600; // how long the first claim's transaction keeps the FIFO claim lock
      await db.sql`select tributary.create_queue('fifo', ${JSON.stringify({ fifo: true, visibility_timeout: visibilitySeconds })}::text::jsonb)`;
      await db.sql`select tributary.send('fifo', '{"n": 1}', '{"key": "a"}')`;
      await db.sql`select tributary.send('fifo', '{"n": 2}', '{"key": "b"}')`;

      // Worker A claims inside a transaction that stays open for holdMs, holding the queue's FIFO lock.
      let releasedAt!: Date;
      let signalHeld!: () => void;
      const held = new Promise<void>((r) => (signalHeld = r));
      const first = db.sql.begin(async (tx) => {
        const [a] = await tx<Claimed[]>`select * from tributary.claim('fifo', 'a')`;
        signalHeld();
        await tx`select pg_sleep(${holdMs / 1000})`;
        releasedAt = await databaseClock(tx);
        return a!;
      });
      await held;
      // Worker B's claim starts now and must wait for A's commit.
      const started = await databaseClock(db.sql);
      const [b] = await db.sql<Array<Claimed & { visible_until: Date }>>`select * from tributary.claim('fifo', 'b')`;
      const returned = await databaseClock(db.sql);
      const a = await first;
      expect([a.payload.n, b!.payload.n]).toEqual([1, 2]);
      const waitedMs = returned.getTime() - started.getTime();
      expect(waitedMs, "B's claim did not wait for A's lock").toBeGreaterThanOrEqual(holdMs * 0.8);

      // The claim took effect after A released the lock: its expiry is at least visibility past that, at most visibility past B's return.
      const [row] = await db.sql<{ claimed_at: Date; locked_until: Date }[]>`select claimed_at, locked_until from tributary.queue_messages where key = 'b'`;
      expect(row!.locked_until.getTime()).toBe(b!.visible_until.getTime());
      expect(row!.claimed_at.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
      expect(row!.locked_until.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime() + visibilitySeconds * 1000);
      expect(row!.locked_until.getTime()).toBeLessThanOrEqual(returned.getTime() + visibilitySeconds * 1000);
      expect(row!.locked_until.getTime() - row!.claimed_at.getTime()).toBe(visibilitySeconds * 1000);

      // extend() and nack() count from when they run too (not from their transaction's start).
      const extended = await db.sql.begin(async (tx) => {
        await tx`select pg_sleep(${holdMs / 1000})`;
        const before = await databaseClock(tx);
        const [row] = await tx<{ until: Date }[]>`select tributary.extend('fifo', ${b!.receipt}, ${`${visibilitySeconds} seconds`}::interval) as until`;
        return { before, until: row!.until };
      });
      expect(extended.until.getTime()).toBeGreaterThanOrEqual(extended.before.getTime() + visibilitySeconds * 1000);
    });
  });
}
