/**
 * Cron schedules on queues: cron_next follows the expression (UTC; Vixie's
 * either-day rule), each tick is sent exactly once with 3 schedulers
 * running, a missed stretch sends the latest tick once (or none with
 * catch_up skip), and bad expressions are clear errors.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createQueue, runScheduler, type Scheduler } from "@tributary/client";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const backend = backends().find((b) => b.decoder === "pgoutput")!;

describe(`queue cron [${backend.name}]`, () => {
  let db: TestDatabase;
  const schedulers: Scheduler[] = [];
  afterEach(async () => {
    await Promise.all(schedulers.splice(0).map((s) => s.stop()));
    await db?.drop();
  });

  it("computes the next tick of cron expressions", async () => {
    db = await createTestDatabase(backend);
    const next = async (cron: string, after: string) => {
      const [row] = await db.sql<{ at: Date }[]>`select tributary.cron_next(${cron}, ${after}::timestamptz) as at`;
      return row!.at.toISOString();
    };
    expect(await next("* * * * *", "2026-01-01T10:00:30Z")).toBe("2026-01-01T10:01:00.000Z");
    expect(await next("*/15 * * * *", "2026-01-01T10:00:00Z")).toBe("2026-01-01T10:15:00.000Z");
    expect(await next("0 3 * * *", "2026-01-01T10:00:00Z")).toBe("2026-01-02T03:00:00.000Z");
    expect(await next("30 9 * * 1-5", "2026-01-02T10:00:00Z")).toBe("2026-01-05T09:30:00.000Z"); // Fri → Mon
    expect(await next("0 0 1,15 * *", "2026-01-02T00:00:00Z")).toBe("2026-01-15T00:00:00.000Z");
    expect(await next("0 0 29 2 *", "2026-03-01T00:00:00Z")).toBe("2028-02-29T00:00:00.000Z"); // leap day
    expect(await next("0 12 13 * 5", "2026-01-01T00:00:00Z")).toBe("2026-01-02T12:00:00.000Z"); // the 13th or a Friday
    expect(await next("0 0 * * 7", "2026-01-01T00:00:00Z")).toBe("2026-01-04T00:00:00.000Z"); // 7 = Sunday
  });

  it("rejects a bad expression, saying which field and what is allowed", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    const error = async (cron: string) =>
      db.sql`select tributary.schedule('s', ${cron}, 'jobs', '{}')`.then(() => null, (e: { message: string; constraint_name: string }) => e);
    expect(await error("* * * *")).toMatchObject({ constraint_name: "tributary_queue_cron", message: expect.stringMatching(/5 fields/) });
    expect((await error("61 * * * *"))?.message).toMatch(/invalid cron minute field '61': values must be 0 to 59/);
    expect((await error("* * * * mon"))?.message).toMatch(/invalid cron day-of-week field 'mon'/);
    expect((await error("*/0 * * * *"))?.message).toMatch(/a step is a positive number/);
    // Numbers too large for an integer are out of the field's range, not an integer overflow.
    for (const [cron, message] of [
      ["*/99999999999 * * * *", /^invalid cron minute field '\*\/99999999999': a step is a positive number, at most 60$/],
      ["* 99999999999 * * *", /^invalid cron hour field '99999999999': values must be 0 to 23$/],
      ["* * 1-99999999999 * *", /^invalid cron day-of-month field '1-99999999999': values must be 1 to 31$/],
      ["* * * */13 *", /^invalid cron month field '\*\/13': a step is a positive number, at most 12$/],
    ] as const) {
      expect(await error(cron), cron).toMatchObject({ code: "22023", constraint_name: "tributary_queue_cron", message: expect.stringMatching(message) });
    }
    expect((await db.sql`select tributary.schedule('s', '* * * * *', 'nope', '{}')`.then(() => null, (e: { message: string }) => e))?.message).toMatch(/queue 'nope' does not exist/);
  });

  it("sends each due tick exactly once with three schedulers running at once", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    for (let i = 0; i < 20; i++) await db.sql`select tributary.schedule(${`s${i}`}, '* * * * *', 'jobs', jsonb_build_object('i', ${i}::int))`;
    // Every schedule due now (as if its minute just came).
    await db.sql`update tributary.queue_schedules set next_run_at = date_trunc('minute', now())`;
    for (let i = 0; i < 3; i++) schedulers.push(runScheduler(db.sql, { maxSleepMs: 20, log: () => {} }));
    await eventually("all 20 ticks sent", async () => (await db.sql`select 1 from tributary.queue_messages`).length >= 20, 10_000);
    await sleep(300);
    const rows = await db.sql<{ i: number; n: number }[]>`select (payload->>'i')::int as i, count(*)::int as n from tributary.queue_messages group by 1`;
    expect(rows).toHaveLength(20);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    expect(schedulers.reduce((sum, s) => sum + s.fired(), 0)).toBe(20);
    const [next] = await db.sql`select min(next_run_at) > now() as future from tributary.queue_schedules`;
    expect(next?.future).toBe(true);
  });

  it("after downtime sends the latest missed tick once (catch_up once), or no late tick (skip)", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    await db.sql`select tributary.schedule('once', '0 * * * *', 'jobs', '{"s": "once"}')`;
    await db.sql`select tributary.schedule('skip', '0 * * * *', 'jobs', '{"s": "skip"}', 'skip')`;
    // Down for a day and a half: 36 hourly ticks missed.
    await db.sql`update tributary.queue_schedules set next_run_at = date_trunc('hour', now()) - interval '36 hours'`;
    const [{ lateNow }] = [(await db.sql<{ lateNow: boolean }[]>`select now() - date_trunc('hour', now()) >= interval '1 minute' as "lateNow"`)[0]!];
    await db.sql`select tributary.fire_schedules()`;
    const sent = await db.sql<{ s: string; tick: Date; hour: Date }[]>`
      select payload->>'s' as s, (payload->>'tick')::timestamptz as tick, date_trunc('hour', now()) as hour from tributary.queue_messages`;
    const once = sent.filter((m) => m.s === "once");
    expect(once).toHaveLength(1);
    expect(once[0]!.tick.getTime()).toBe(once[0]!.hour.getTime()); // the latest missed tick, not the first
    // The latest tick is this hour's: more than a minute late (skip sends nothing), unless this hour just began.
    expect(sent.filter((m) => m.s === "skip")).toHaveLength(lateNow ? 0 : 1);
    const [again] = await db.sql`select tributary.fire_schedules() as fired`;
    expect(again?.fired).toBe(0); // both moved on to the next hour
    const [next] = await db.sql`select bool_and(next_run_at = date_trunc('hour', now()) + interval '1 hour') as ok from tributary.queue_schedules`;
    expect(next?.ok).toBe(true);
  });
});
