/**
 * Readers without a consumer group (packages/client/src/internal/reader.ts):
 * tails see existing events, then new ones within moments of the relay's
 * notification; each partition comes in offset order; `latest` and a Date
 * start where they say; readKey returns one key's history through its index;
 * a tail that is stopped (break or abort) releases its LISTEN and its timer.
 *
 * The readers only read tributary.events, whatever decoder filled it, so they
 * run once per server (with pgoutput), not once per decoder.
 */
import postgres, { type Sql } from "postgres";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  append,
  appendBatch,
  createStream,
  parseStartPosition,
  readKey,
  tailPartition,
  tailStream,
  TributaryReadError,
  type StreamEvent,
} from "@tributary/client";
import { resolveStart } from "../packages/client/src/internal/reader.ts";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { waitForCount } from "./support/streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The next `n` events of a tail, failing after `timeoutMs` in all. */
async function take(events: AsyncIterator<StreamEvent>, n: number, timeoutMs = 20_000): Promise<StreamEvent[]> {
  const deadline = Date.now() + timeoutMs;
  const taken: StreamEvent[] = [];
  while (taken.length < n) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out with ${taken.length} of ${n} events`)), Math.max(deadline - Date.now(), 0));
    });
    try {
      const next = await Promise.race([events.next(), timeout]);
      if (next.done) throw new Error(`the tail ended after ${taken.length} of ${n} events`);
      taken.push(next.value);
    } finally {
      clearTimeout(timer);
    }
  }
  return taken;
}

/** The last statement and state of each server backend of a client (by application_name). */
async function backendsOf(sql: Sql, applicationName: string): Promise<Array<{ query: string; state: string }>> {
  return [...(await sql<{ query: string; state: string }[]>`
    select query, state from pg_stat_activity where application_name = ${applicationName}`)];
}

/**
 * Until the tail of client `applicationName` has read and found itself caught
 * up: its query connection is idle after a read round and its LISTEN is in
 * place. From then on a new event reaches it only through a notification (or
 * the fallback poll).
 */
async function untilTailWaits(sql: Sql, applicationName: string): Promise<void> {
  await eventually(`the tail of ${applicationName} to wait for new events`, async () => {
    const connections = await backendsOf(sql, applicationName);
    return (
      connections.some((c) => c.state === "idle" && c.query.includes("tributary.read_partitions")) &&
      connections.some((c) => c.state === "idle" && /^listen "tributary_events"/.test(c.query))
    );
  });
}

describe("parseStartPosition", () => {
  it("reads earliest, latest, offsets and ISO times; says what it accepts otherwise", () => {
    expect(parseStartPosition("earliest")).toBe("earliest");
    expect(parseStartPosition("latest")).toBe("latest");
    expect(parseStartPosition("1200")).toBe(1200);
    expect(parseStartPosition("2025-01-31T12:00:00Z")).toEqual(new Date("2025-01-31T12:00:00Z"));
    expect(parseStartPosition("2025-01-31T12:00:00.5+02:00")).toEqual(new Date("2025-01-31T10:00:00.5Z"));
    expect(parseStartPosition("2025-01-31")).toEqual(new Date("2025-01-31T00:00:00Z"));
    for (const bad of ["yesterday", "-1", "1.5", "2025-02-30", "2025-13-01", "12:00", "", "99999999999999999999"]) {
      expect(() => parseStartPosition(bad), bad).toThrow(TributaryReadError);
      expect(() => parseStartPosition(bad), bad).toThrow(/use earliest, latest, an offset \(e\.g\. 1200\) or an ISO 8601 time/);
    }
  });
});

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`readers [${backend.name}]`, () => {
    let db: TestDatabase;
    let relay: RelayHandle;
    const stops: AbortController[] = [];

    /** A tail's AbortSignal, aborted after the test whatever happened. */
    function stopSignal(): AbortSignal {
      const controller = new AbortController();
      stops.push(controller);
      return controller.signal;
    }

    beforeEach(async () => {
      db = await createTestDatabase(backend);
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    });
    afterEach(async () => {
      for (const s of stops.splice(0)) s.abort();
      await relay.stop();
      await db.drop();
    });

    it("tails from earliest: the existing events, then new ones as soon as the relay notifies (not at the fallback poll)", async () => {
      await createStream(db.sql, "orders", 4);
      const existing = await appendBatch(db.sql, Array.from({ length: 12 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "OrderPlaced", data: { i } })));
      await waitForCount(db.sql, 12);

      const tailSql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: "tail-wakes" } });
      try {
        // A 60 s fallback poll: anything that arrives within seconds came through the notification.
        const events = tailStream(tailSql, { stream: "orders", from: "earliest", pollIntervalMs: 60_000, signal: stopSignal() })[Symbol.asyncIterator]();
        const first = await take(events, 12);
        expect(new Set(first.map((e) => e.id))).toEqual(new Set(existing));
        const pending = take(events, 3, 15_000);
        pending.catch(() => {}); // awaited below; a failure before that must not go unhandled
        await untilTailWaits(db.sql, "tail-wakes");

        const appended = performance.now();
        const fresh = await appendBatch(db.sql, ["o1", "o5", "o9"].map((key) => ({ stream: "orders", key, type: "OrderPaid", data: {} })));
        const received = await pending;
        const elapsed = performance.now() - appended;
        console.info(`tail received new events ${elapsed.toFixed(0)} ms after their commit (relay batch + notify + read)`);
        expect(new Set(received.map((e) => e.id))).toEqual(new Set(fresh));
        expect(elapsed).toBeLessThan(10_000);
        expect(received.every((e) => e.type === "OrderPaid" && e.stream === "orders" && e.committedAt instanceof Date)).toBe(true);
      } finally {
        for (const s of stops) s.abort();
        await tailSql.end({ timeout: 5 });
      }
    });

    it("yields each partition in offset order while concurrent writers append", async () => {
      await createStream(db.sql, "orders", 4);
      const total = 8 * 25;
      // A small batch makes the tail read in many rounds, some racing the relay.
      const tail = tailStream(db.sql, { stream: "orders", from: "earliest", batchSize: 7, signal: stopSignal() })[Symbol.asyncIterator]();
      const reading = take(tail, total, 60_000);
      const appended: string[] = [];
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let t = 0; t < 5; t++) {
            const ids = await appendBatch(db.sql, Array.from({ length: 5 }, (_, i) => ({ stream: "orders", key: `w${w}-k${i % 3}`, type: "Step", data: { w, t, i } })));
            appended.push(...ids);
          }
        }),
      );
      const events = await reading;
      expect(new Set(events.map((e) => e.id))).toEqual(new Set(appended));
      const next = new Map<number, number>();
      for (const e of events) {
        expect(e.offset, `partition ${e.partition}`).toBe(next.get(e.partition) ?? 0);
        next.set(e.partition, e.offset + 1);
      }
      expect(next.size).toBeGreaterThan(1);
      // Within a key (one writer, in order), the tail's order is the writer's order.
      const seen = new Map<string, number[]>();
      for (const e of events) {
        const { t, i } = e.data as { t: number; i: number };
        seen.set(e.key, [...(seen.get(e.key) ?? []), t * 10 + i]);
      }
      for (const [key, seq] of seen) expect(seq, key).toEqual([...seq].sort((a, b) => a - b));
    });

    it("from latest yields only events appended after the tail started; tailPartition only its partition", async () => {
      await createStream(db.sql, "orders", 4);
      await appendBatch(db.sql, Array.from({ length: 8 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "Old", data: { i } })));
      await waitForCount(db.sql, 8);

      const tailSql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: "tail-latest" } });
      try {
        const signal = stopSignal();
        const whole = tailStream(tailSql, { stream: "orders", from: "latest", signal })[Symbol.asyncIterator]();
        const pending = take(whole, 8);
        pending.catch(() => {}); // awaited below
        await untilTailWaits(db.sql, "tail-latest");
        const fresh = await appendBatch(db.sql, Array.from({ length: 8 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "New", data: { i } })));
        const received = await pending;
        expect(new Set(received.map((e) => e.id))).toEqual(new Set(fresh));
        expect(received.every((e) => e.type === "New")).toBe(true);
      } finally {
        for (const s of stops) s.abort();
        await tailSql.end({ timeout: 5 });
      }

      const [busiest] = await db.sql<{ partition: number; n: number }[]>`
        select partition, count(*)::int as n from tributary.events group by partition order by n desc, partition limit 1`;
      const one = tailPartition(db.sql, { stream: "orders", partition: busiest!.partition, from: 1, signal: stopSignal() })[Symbol.asyncIterator]();
      const events = await take(one, busiest!.n - 1);
      expect(events.map((e) => [e.partition, e.offset])).toEqual(Array.from({ length: busiest!.n - 1 }, (_, i) => [busiest!.partition, i + 1]));
    });

    it("from a Date starts at the first event committed at or after it, else at the end", async () => {
      await createStream(db.sql, "orders", 4);
      await appendBatch(db.sql, Array.from({ length: 6 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "Before", data: { i } })));
      await waitForCount(db.sql, 6);
      // Commit times are microseconds; a Date is milliseconds: keep clear of the boundary on both sides.
      await sleep(30);
      const at = (await db.sql<{ at: Date }[]>`select clock_timestamp() as at`)[0]!.at;
      await sleep(30);
      const after = await appendBatch(db.sql, Array.from({ length: 6 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "After", data: { i } })));
      await waitForCount(db.sql, 12);

      const tail = tailStream(db.sql, { stream: "orders", from: at, signal: stopSignal() })[Symbol.asyncIterator]();
      const events = await take(tail, 6);
      expect(new Set(events.map((e) => e.id))).toEqual(new Set(after));

      const ends = await db.sql<{ partition: number; next_offset: string }[]>`
        select partition, next_offset from tributary.partition_offsets where stream = 'orders'`;
      for (let p = 0; p < 4; p++) {
        const end = Number(ends.find((e) => e.partition === p)?.next_offset ?? 0);
        const firstAfter = events.filter((e) => e.partition === p).map((e) => e.offset)[0] ?? end;
        expect(await resolveStart(db.sql, "orders", p, at), `partition ${p}`).toBe(firstAfter);
        expect(await resolveStart(db.sql, "orders", p, new Date(Date.now() + 3_600_000))).toBe(end);
        expect(await resolveStart(db.sql, "orders", p, new Date(0))).toBe(0);
        expect(await resolveStart(db.sql, "orders", p, "latest")).toBe(end);
        expect(await resolveStart(db.sql, "orders", p, "earliest")).toBe(0);
      }
      // A partition nothing was ever written to ends at 0.
      await createStream(db.sql, "empty", 2);
      expect(await resolveStart(db.sql, "empty", 1, "latest")).toBe(0);
      expect(await resolveStart(db.sql, "empty", 1, at)).toBe(0);
    });

    it("readKey returns exactly one key's events in offset order, through the (stream, key, offset) index", async () => {
      await createStream(db.sql, "accounts", 4);
      for (let t = 0; t < 10; t++) {
        const keys = t % 2 ? ["k3", "k2", "k1"] : ["k1", "k2", "k3"];
        await appendBatch(db.sql, [
          ...keys.map((key) => ({ stream: "accounts", key, type: "Changed", data: { t } })),
          { stream: "other", key: "k2", type: "Elsewhere", data: { t } },
        ]);
      }
      await waitForCount(db.sql, 40);

      const history = await readKey(db.sql, { stream: "accounts", key: "k2" });
      expect(history.map((e) => (e.data as { t: number }).t)).toEqual([...Array(10).keys()]);
      expect(history.every((e) => e.stream === "accounts" && e.key === "k2" && e.type === "Changed")).toBe(true);
      expect(history.map((e) => e.offset)).toEqual([...history.map((e) => e.offset)].sort((a, b) => a - b));
      expect(await readKey(db.sql, { stream: "accounts", key: "k2", from: history[3]!.offset, limit: 4 })).toEqual(history.slice(3, 7));
      expect(await readKey(db.sql, { stream: "accounts", key: "nobody" })).toEqual([]);

      // EXPLAIN the very statement readKey sent (read back from pg_stat_activity).
      // With 40 rows a sequential scan is the cheaper plan and the planner is
      // right to take it; turning sequential scans off in this session asks
      // which index the query can use, and that it needs no sort.
      const session = await db.sql.reserve();
      try {
        const pid = (await session<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
        await readKey(session, { stream: "accounts", key: "k2" });
        const query = (await db.sql<{ query: string }[]>`select query from pg_stat_activity where pid = ${pid}`)[0]!.query;
        expect(query).toMatch(/tributary\.events/);
        await session`set enable_seqscan = off`;
        const plan = (await session.unsafe(`explain ${query}`, ["accounts", "k2", 0])).map((row) => row["QUERY PLAN"] as string).join("\n");
        // Each segment's copy of events_key_idx (migration 0010 partitions the table by stream and segment).
        expect(plan).toMatch(/Index Scan using "events\.[0-9a-f]{12}\.0_stream_key_offset_idx" on "events\.[0-9a-f]{12}\.0"/);
        expect(plan).toMatch(/Index Cond: \(\(stream = .*\) AND \(key = .*\) AND \("offset" >= .*\)\)/);
        expect(plan).not.toMatch(/Sort/);
      } finally {
        await session`reset enable_seqscan`;
        session.release();
      }
    });

    it("a tail left by break releases its LISTEN, and an aborted one stops at once; no timer is left behind", async () => {
      await append(db.sql, { stream: "orders", key: "o1", type: "OrderPlaced", data: {} });
      await waitForCount(db.sql, 1);
      const pollIntervalMs = 61_234; // recognisable among the process's timers
      const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
      const clearTimeoutSpy = vi.spyOn(globalThis, "clearTimeout");
      const tailSql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: "tail-stops" } });
      const abortSql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: "tail-aborts" } });
      try {
        // break, after the tail slept and a notification woke it
        const giveUp = new AbortController(); // ends the loop if the append below fails
        let seen = 0;
        let appendWhileWaiting: Promise<unknown> | undefined;
        for await (const event of tailStream(tailSql, { stream: "orders", from: "earliest", pollIntervalMs, signal: giveUp.signal })) {
          seen++;
          if (event.offset === 0 && !appendWhileWaiting) {
            appendWhileWaiting = untilTailWaits(db.sql, "tail-stops")
              .then(() => append(db.sql, { stream: "orders", key: "o1", type: "OrderPaid", data: {} }))
              .catch((error: unknown) => {
                giveUp.abort();
                throw error;
              });
            appendWhileWaiting.catch(() => {}); // awaited after the loop
            continue;
          }
          break;
        }
        await appendWhileWaiting;
        expect(seen).toBe(2);
        const afterBreak = await backendsOf(db.sql, "tail-stops");
        expect(afterBreak.map((c) => c.query)).toContain('unlisten "tributary_events"');

        // abort while it waits: the pending next() is done well before the poll
        const controller = new AbortController();
        const events = tailStream(abortSql, { stream: "orders", from: "latest", pollIntervalMs, signal: controller.signal })[Symbol.asyncIterator]();
        const next = events.next();
        await untilTailWaits(db.sql, "tail-aborts");
        const aborted = performance.now();
        controller.abort();
        expect(await next).toEqual({ done: true, value: undefined });
        expect(performance.now() - aborted).toBeLessThan(1000);
        expect((await backendsOf(db.sql, "tail-aborts")).map((c) => c.query)).toContain('unlisten "tributary_events"');

        const pollTimers = setTimeoutSpy.mock.calls.flatMap((call, i) => (call[1] === pollIntervalMs ? [setTimeoutSpy.mock.results[i]!.value] : []));
        expect(pollTimers.length).toBeGreaterThanOrEqual(2);
        const cleared = new Set(clearTimeoutSpy.mock.calls.map((call) => call[0]));
        for (const timer of pollTimers) expect(cleared.has(timer), "a fallback-poll timer was left running").toBe(true);
      } finally {
        setTimeoutSpy.mockRestore();
        clearTimeoutSpy.mockRestore();
        const ending = performance.now();
        await Promise.all([tailSql.end({ timeout: 5 }), abortSql.end({ timeout: 5 })]);
        expect(performance.now() - ending).toBeLessThan(1000);
      }
    });

    it("refuses an unknown stream, a partition it does not have and a bad start, saying what is wrong", async () => {
      await createStream(db.sql, "orders", 4);
      const first = (events: AsyncIterable<StreamEvent>) => events[Symbol.asyncIterator]().next();
      await expect(first(tailStream(db.sql, { stream: "nope", from: "earliest" }))).rejects.toMatchObject({
        code: "UNKNOWN_STREAM",
        message: expect.stringMatching(/stream 'nope' does not exist.*\(tributary\.streams lists the streams\)/),
      });
      await expect(first(tailPartition(db.sql, { stream: "orders", partition: 4, from: "earliest" }))).rejects.toMatchObject({
        code: "INVALID_PARTITION",
        message: "partition 4 does not exist: stream 'orders' has 4 partitions (0 to 3)",
      });
      await expect(first(tailStream(db.sql, { stream: "orders", from: -1 }))).rejects.toMatchObject({ code: "INVALID_START" });
      await expect(first(tailStream(db.sql, { stream: "orders", from: new Date(Number.NaN) }))).rejects.toMatchObject({ code: "INVALID_START" });
    });
  });
}
