/**
 * `tributary queues`, `queues dead`, `queues redrive` and the queues section
 * of `tributary status`, as a user runs them (the CLI in its own process),
 * against queues set up through the SQL API: messages ready, in flight,
 * delayed (a delay and a nack's backoff) and dead (nacked max_deliveries
 * times), worker rows as work() leaves them, a real work() worker, and a cron
 * schedule. Queues do not depend on the WAL decoder: once per server (pgoutput).
 */
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { work } from "@tributary/client";
import { applyMigrations, readMigrations } from "@tributary/migrate";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { runCli as run } from "./support/cli.ts";


interface QueueJson {
  queue: string;
  fifo: boolean;
  visibilityTimeoutSeconds: number;
  maxDeliveries: number;
  backoff: { baseSeconds: number; maxSeconds: number; jitter: number };
  stream: string | null;
  ready: number;
  inFlight: number;
  delayed: number;
  dead: number;
  oldestReadyAgeSeconds: number | null;
  liveWorkers: number;
  succeededPerSecond: number | null;
  workers: Array<{ worker: string; concurrency: number; inFlight: number; succeeded: number; failed: number; startedAt: string; heartbeatAt: string; succeededPerSecond: number | null }>;
  schedules: Array<{ name: string; cron: string; catchUp: string; nextRunAt: string; lastRunAt: string | null }>;
}

interface DeadJson {
  id: number;
  key: string | null;
  deliveries: number;
  lastError: string | null;
  enqueuedAt: string;
  deadAt: string;
  payload: unknown;
  history: Array<{ at: string; worker: string | null; error: string | null }>;
  headers: Record<string, string>;
}

const jsonLines = <T>(stdout: string): T[] => stdout.trimEnd().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as T);

async function claimOne(sql: Sql, queue: string, worker: string, visibility: string | null = null): Promise<{ id: string; receipt: string }> {
  const [claimed] = await sql<{ id: string; receipt: string }[]>`
    select id::text, receipt::text from tributary.claim(${queue}, ${worker}, 1, ${visibility}::interval)`;
  expect(claimed, `a message to claim from ${queue}`).toBeDefined();
  return claimed!;
}

/** Sends a poison message and fails it max_deliveries (2) times: into the dead letters. */
async function bury(sql: Sql, queue: string, payload: object, key: string | null, errors: [string, string]): Promise<string> {
  const [sent] = await sql<{ id: string }[]>`
    select tributary.send(${queue}, ${sql.json(payload as never)}, ${sql.json((key === null ? {} : { key }) as never)})::text as id`;
  for (const [i, error] of errors.entries()) {
    const claimed = await claimOne(sql, queue, `poison-${i + 1}`);
    expect(claimed.id).toBe(sent!.id);
    await sql`select tributary.nack(${queue}, ${claimed.receipt}::uuid, ${error}, interval '0')`;
  }
  return sent!.id;
}

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`tributary queues [${backend.name}]`, () => {
    let db: TestDatabase;
    let env: Record<string, string>;
    let poison: [string, string];
    let nextNightly: string;

    const deadIds = async (queue: string) =>
      (await db.sql<{ id: string }[]>`select id::text from tributary.queue_dead_letters where queue = ${queue} order by id`).map((r) => r.id);

    beforeAll(async () => {
      db = await createTestDatabase(backend);
      env = { DATABASE_URL: db.url };
      // A minute's backoff: a nacked message stays delayed for the whole test.
      await db.sql`select tributary.create_queue('emails', '{"visibility_timeout": 30, "max_deliveries": 2, "backoff": {"base": 60, "max": 600, "jitter": 0}}')`;
      await db.sql`select tributary.create_queue('per-customer', '{"fifo": true, "stream": "orders", "visibility_timeout": "2 minutes"}')`;
      await db.sql`select tributary.create_queue('thumbnails')`;

      // Two dead letters (nacked twice each), the first with a FIFO-style key and a multi-line error.
      poison = [
        await bury(db.sql, "emails", { to: "bounce@example.com" }, "customer-7", ["smtp 421 try later", "smtp 550\nmailbox unavailable"]),
        await bury(db.sql, "emails", { to: "nobody@example.com" }, null, ["dns timeout", "dns timeout again"]),
      ];
      // m1 in flight; m2 nacked with an hour's delay and d1 sent with one: delayed; m3, m4 ready.
      for (let n = 1; n <= 4; n++) await db.sql`select tributary.send('emails', ${db.sql.json({ n })})`;
      await claimOne(db.sql, "emails", "w-busy", "1 hour"); // in flight however long the test takes
      const m2 = await claimOne(db.sql, "emails", "w-busy");
      await db.sql`select tributary.nack('emails', ${m2.receipt}::uuid, 'later', interval '1 hour')`;
      await db.sql`select tributary.send('emails', '{"d": 1}', '{"delay": 3600}')`;

      // Worker rows as work() keeps them: one live (2.5 acks/s over 100 s), one whose heartbeats stopped 20 s ago.
      await db.sql`
        insert into tributary.queue_workers (worker, queue, concurrency, in_flight, succeeded, failed, started_at, heartbeat_at)
        values ('host-a:101:live', 'emails', 8, 1, 250, 4, now() - interval '100 seconds', now()),
               ('host-b:202:gone', 'emails', 4, 2, 9, 9, now() - interval '200 seconds', now() - interval '20 seconds')`;
      await db.sql`select tributary.schedule('nightly-report', '0 3 * * *', 'emails', '{"report": "daily"}')`;
      const [next] = await db.sql<{ at: Date }[]>`select next_run_at as at from tributary.queue_schedules where name = 'nightly-report'`;
      nextNightly = next!.at.toISOString();
    });

    afterAll(async () => {
      await db?.drop();
    });

    it("queues --json: one line per queue with its settings, messages by state, live workers and schedules; the table shows the same", async () => {
      const [json, table, one] = await Promise.all([
        run(["queues", "--json"], env),
        run(["queues", "--database-url", db.url]),
        run(["queues", "--queue", "per-customer", "--json"], env),
      ]);
      for (const r of [json, table, one]) expect([r.code, r.stderr]).toEqual([0, ""]);
      const queues = jsonLines<QueueJson>(json.stdout);
      expect(queues.map((q) => q.queue)).toEqual(["emails", "per-customer", "thumbnails"]);
      const [emails, perCustomer, thumbnails] = queues;
      expect(emails).toMatchObject({
        fifo: false, visibilityTimeoutSeconds: 30, maxDeliveries: 2, backoff: { baseSeconds: 60, maxSeconds: 600, jitter: 0 }, stream: null,
        ready: 2, inFlight: 1, delayed: 2, dead: 2, liveWorkers: 1, succeededPerSecond: 2.5,
      });
      expect(emails!.oldestReadyAgeSeconds).toBeGreaterThanOrEqual(0);
      expect(emails!.oldestReadyAgeSeconds).toBeLessThan(60);
      expect(emails!.workers).toEqual([
        expect.objectContaining({ worker: "host-a:101:live", concurrency: 8, inFlight: 1, succeeded: 250, failed: 4, succeededPerSecond: 2.5 }),
      ]);
      expect(emails!.schedules).toEqual([{ name: "nightly-report", cron: "0 3 * * *", catchUp: "once", nextRunAt: nextNightly, lastRunAt: null }]);
      expect(perCustomer).toMatchObject({
        fifo: true, visibilityTimeoutSeconds: 120, maxDeliveries: 5, stream: "orders",
        ready: 0, inFlight: 0, delayed: 0, dead: 0, oldestReadyAgeSeconds: null, liveWorkers: 0, succeededPerSecond: null, workers: [], schedules: [],
      });
      expect(thumbnails).toMatchObject({ fifo: false, visibilityTimeoutSeconds: 30, backoff: { baseSeconds: 1, maxSeconds: 300, jitter: 0.2 } });
      expect(jsonLines<QueueJson>(one.stdout)).toEqual([perCustomer]);

      expect(table.stdout).toMatch(/^QUEUE emails +visibility 30 s +max deliveries 2 +backoff 1 min to 10 min ±0%$/m);
      expect(table.stdout).toMatch(/^ +ready 2 +in flight 1 +delayed 2 +dead 2 +oldest ready \d/m);
      expect(table.stdout).toMatch(/^ +host-a:101:live +8 +1 +250 +4 +2\.5\/s +\d{4}-\d\d-\d\dT/m);
      expect(table.stdout).not.toMatch(/host-b:202:gone/);
      expect(table.stdout).toMatch(new RegExp(`^ +nightly-report +0 3 \\* \\* \\* +${nextNightly.replace(/\./g, "\\.")} +-$`, "m"));
      expect(table.stdout).toMatch(/^QUEUE per-customer \(fifo, fed by stream orders\) +visibility 2 min /m);
      expect(table.stdout).toMatch(/^ +ready 0 +in flight 0 +delayed 0 +dead 0 +oldest ready -$/m);
      expect(table.stdout).toMatch(/^ +\(no live workers\)$/m);
    });

    it("a worker started with work() is listed while it runs, with its heartbeat's counts, and gone once it stopped", async () => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const worker = await work<{ hold?: boolean }>(db.sql, "thumbnails", async (message) => {
        if (message.payload.hold) await held;
      }, { concurrency: 3, worker: "thumb-1", pollIntervalMs: 100, log: () => {} });
      try {
        await db.sql`select tributary.send('thumbnails', '{"n": 1}')`;
        await db.sql`select tributary.send('thumbnails', '{"hold": true}')`;
        // The registry learns the counts at the next heartbeat (every 5 s).
        await eventually("the worker's heartbeat to report 1 succeeded and 1 in flight", async () => {
          const [row] = await db.sql<{ succeeded: string; in_flight: number }[]>`
            select succeeded::text, in_flight from tributary.queue_workers where worker = 'thumb-1'`;
          return row?.succeeded === "1" && row.in_flight === 1;
        }, 15_000, 200);
        const listed = await run(["queues", "--queue", "thumbnails", "--json"], env);
        expect(listed.code, listed.stderr).toBe(0);
        const [thumbnails] = jsonLines<QueueJson>(listed.stdout);
        expect(thumbnails).toMatchObject({ ready: 0, inFlight: 1, delayed: 0, dead: 0, liveWorkers: 1 });
        expect(thumbnails!.workers).toEqual([expect.objectContaining({ worker: "thumb-1", concurrency: 3, inFlight: 1, succeeded: 1, failed: 0 })]);
        expect(thumbnails!.workers[0]!.succeededPerSecond).toBeGreaterThan(0);
      } finally {
        release();
        await worker.stop();
      }
      const stopped = await run(["queues", "--queue", "thumbnails", "--json"], env);
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(jsonLines<QueueJson>(stopped.stdout)[0]).toMatchObject({ ready: 0, inFlight: 0, liveWorkers: 0, workers: [] });
    });

    it("status shows each queue's messages by state and its live workers, as JSON and as a table", async () => {
      // Live means a heartbeat within 15 s: the tests before this one may have taken longer than that.
      await db.sql`update tributary.queue_workers set heartbeat_at = now(), started_at = now() - interval '100 seconds' where worker = 'host-a:101:live'`;
      const [json, table] = await Promise.all([run(["status", "--json"], env), run(["status"], env)]);
      for (const r of [json, table]) expect([r.code, r.stderr]).toEqual([0, ""]);
      const status = JSON.parse(json.stdout) as { queues: Array<Record<string, unknown>> };
      expect(status.queues).toEqual([
        { queue: "emails", ready: 2, inFlight: 1, delayed: 2, dead: 2, oldestReadyAgeSeconds: expect.any(Number), workers: 1, succeededPerSecond: 2.5 },
        { queue: "per-customer", ready: 0, inFlight: 0, delayed: 0, dead: 0, oldestReadyAgeSeconds: null, workers: 0, succeededPerSecond: null },
        { queue: "thumbnails", ready: 0, inFlight: 0, delayed: 0, dead: 0, oldestReadyAgeSeconds: null, workers: 0, succeededPerSecond: null },
      ]);
      expect(table.stdout).toMatch(/^QUEUE +READY +IN FLIGHT +DELAYED +DEAD +OLDEST READY +WORKERS +RATE$/m);
      expect(table.stdout).toMatch(/^emails +2 +1 +2 +2 +\d.* s +1 +2\.5\/s$/m);
      expect(table.stdout).toMatch(/^per-customer +0 +0 +0 +0 +- +0 +-$/m);
    });

    it("queues dead lists the dead letters with their last error; --json adds payload and history; --limit says what it left out", async () => {
      const [table, json, limited] = await Promise.all([
        run(["queues", "dead", "emails"], env),
        run(["queues", "dead", "emails", "--json"], env),
        run(["queues", "dead", "emails", "--limit", "1"], env),
      ]);
      for (const r of [table, json, limited]) expect([r.code, r.stderr]).toEqual([0, ""]);
      const dead = jsonLines<DeadJson>(json.stdout);
      expect(dead.map((d) => [d.id, d.key, d.deliveries, d.lastError, d.payload])).toEqual([
        [Number(poison[0]), "customer-7", 2, "smtp 550\nmailbox unavailable", { to: "bounce@example.com" }],
        [Number(poison[1]), null, 2, "dns timeout again", { to: "nobody@example.com" }],
      ]);
      expect(dead[0]!.history.map((h) => [h.worker, h.error])).toEqual([["poison-1", "smtp 421 try later"], ["poison-2", "smtp 550\nmailbox unavailable"]]);
      expect(dead[0]!.deadAt).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(dead.map((d) => d.headers)).toEqual([{}, {}]); // sent without headers

      expect(table.stdout).toMatch(/^ +ID +KEY +DELIVERIES +DEAD AT +LAST ERROR$/m);
      expect(table.stdout).toMatch(new RegExp(`^ +${poison[0]} +customer-7 +2 +\\d{4}-\\S+ +smtp 550 mailbox unavailable$`, "m"));
      expect(table.stdout).toMatch(new RegExp(`^ +${poison[1]} +- +2 +\\d{4}-\\S+ +dns timeout again$`, "m"));
      expect(limited.stdout).toMatch(new RegExp(`^ +${poison[0]} +customer-7 `, "m"));
      expect(limited.stdout).not.toMatch(/dns timeout/);
      expect(limited.stdout).toMatch(/\(1 of 2 shown: raise --limit for more\)/);

      const none = await run(["queues", "dead", "thumbnails"], env);
      expect([none.code, none.stdout]).toEqual([0, "(no dead letters in queue 'thumbnails')\n"]);
    });

    it("bad input exits 2 with a message that says what is wrong, and changes nothing", async () => {
      const [deadUnknown, redriveUnknown, listUnknown, neither, both, badId, badLimit, noQueue, sub, noDb] = await Promise.all([
        run(["queues", "dead", "nope"], env),
        run(["queues", "redrive", "nope", "--all"], env),
        run(["queues", "--queue", "nope"], env),
        run(["queues", "redrive", "emails"], env),
        run(["queues", "redrive", "emails", "--all", "--id", poison[0]], env),
        run(["queues", "redrive", "emails", "--id", "first"], env),
        run(["queues", "dead", "emails", "--limit", "0"], env),
        run(["queues", "dead"], env),
        run(["queues", "frobnicate"], env),
        run(["queues"]),
      ]);
      for (const r of [deadUnknown, redriveUnknown, listUnknown, neither, both, badId, badLimit, noQueue, sub, noDb]) {
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe("");
      }
      // The SQL API's own message and hint.
      for (const r of [deadUnknown, redriveUnknown, listUnknown]) {
        expect(r.stderr).toMatch(/^tributary queues: queue 'nope' does not exist \(create it with tributary\.create_queue\(name, options\)\)$/m);
      }
      expect(neither.stderr).toMatch(/say which dead letters to redrive: --id N \(repeatable\) or --all/);
      expect(both.stderr).toMatch(/give --id or --all, not both/);
      expect(badId.stderr).toMatch(/--id must be a dead letter's id \(a whole number\), not 'first'/);
      expect(badLimit.stderr).toMatch(/--limit must be a positive whole number, not '0'/);
      expect(noQueue.stderr).toMatch(/no queue given/);
      expect(sub.stderr).toMatch(/unknown subcommand 'frobnicate'/);
      expect(noDb.stderr).toMatch(/DATABASE_URL/);
      expect(await deadIds("emails")).toEqual(poison);
      const [created] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.queues where name = 'nope'`;
      expect(created!.n).toBe(0);

      const help = await run(["queues", "redrive", "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: tributary queues redrive QUEUE --id N/);
    });

    it("queues redrive --id puts that dead letter back as a ready message with its deliveries reset; --all the rest", async () => {
      const readyBefore = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_messages where queue = 'emails' and visible_at <= now()`;
      const one = await run(["queues", "redrive", "emails", "--id", poison[0], "--id", "999999"], env);
      expect(one.code, one.stderr).toBe(0);
      expect(one.stdout).toBe("redrove 1 dead letter back into queue 'emails'\n");
      expect(one.stderr).toBe("not dead letters of queue 'emails' (already redriven, or never dead): 999999\n");
      expect(await deadIds("emails")).toEqual([poison[1]]);
      const back = await db.sql<{ key: string | null; payload: unknown; deliveries: number; receipt: string | null; ready: boolean; history: unknown[] }[]>`
        select key, payload, deliveries, receipt, visible_at <= now() as ready, history
          from tributary.queue_messages where queue = 'emails' and payload = '{"to": "bounce@example.com"}'`;
      expect(back).toEqual([{ key: "customer-7", payload: { to: "bounce@example.com" }, deliveries: 0, receipt: null, ready: true, history: expect.any(Array) }]);
      const readyAfter = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_messages where queue = 'emails' and visible_at <= now()`;
      expect(readyAfter[0]!.n).toBe(readyBefore[0]!.n + 1);

      // The same id again: nothing left to move, and it says so.
      const again = await run(["queues", "redrive", "emails", "--id", poison[0]], env);
      expect([again.code, again.stdout]).toEqual([0, "redrove 0 dead letters back into queue 'emails'\n"]);
      expect(again.stderr).toMatch(new RegExp(`: ${poison[0]}$`, "m"));

      const all = await run(["queues", "redrive", "emails", "--all", "--json"], env);
      expect(all.code, all.stderr).toBe(0);
      expect(JSON.parse(all.stdout)).toEqual({ queue: "emails", redriven: 1, missing: [] });
      expect(await deadIds("emails")).toEqual([]);
      const listed = jsonLines<QueueJson>((await run(["queues", "--queue", "emails", "--json"], env)).stdout);
      expect(listed[0]).toMatchObject({ ready: 4, inFlight: 1, delayed: 2, dead: 0 });
    });
  });

  describe(`tributary queues and status on a schema without queues [${backend.name}]`, () => {
    let db: TestDatabase;

    beforeAll(async () => {
      db = await createTestDatabase(backend, { migrate: false });
      // The schema as it was before migrations/0003_queues.sql.
      await applyMigrations(db.sql, readMigrations().filter((m) => m.version < 3));
    });

    afterAll(async () => {
      await db?.drop();
    });

    it("status leaves the queues section out; queues says to migrate", async () => {
      const env = { DATABASE_URL: db.url };
      const [json, table, queues] = await Promise.all([run(["status", "--json"], env), run(["status"], env), run(["queues"], env)]);
      for (const r of [json, table]) expect([r.code, r.stderr]).toEqual([0, ""]);
      const status = JSON.parse(json.stdout) as Record<string, unknown>;
      expect(status).toHaveProperty("groups");
      expect(status).not.toHaveProperty("queues");
      expect(table.stdout).not.toMatch(/^QUEUE/m);
      expect(queues.code).toBe(1);
      expect(queues.stderr).toMatch(/no queues schema \(tributary\.queues\): run tributary migrate/);
    });
  });
}
