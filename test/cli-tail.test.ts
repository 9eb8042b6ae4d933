/**
 * `tributary tail` as a user runs it (`node apps/cli/bin/tributary.js` in
 * its own process): JSON lines on stdout with every event field, existing
 * events from --from earliest and then new ones; SIGTERM exits 0 well within
 * a deploy's grace period; bad input exits 2 saying what is wrong and what to do.
 */
import { afterEach, describe, expect, it } from "vitest";
import { appendBatch, createStream } from "@tributary/client";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { emitSignedEvent, readAll, waitForCount } from "./support/streams.ts";
import { runCli as run, startCli as start, killCliChildren } from "./support/cli.ts";

const backend = backends()[0]!;

afterEach(() => killCliChildren());

interface Line {
  stream: string;
  partition: number;
  offset: number;
  id: string;
  key: string;
  type: string;
  data: unknown;
  headers: Record<string, unknown>;
  committed_at: string;
}

describe("tributary tail", () => {
  // Each run boots the CLI (tsx + its dependencies, about a second of CPU): few runs, in parallel.
  it("--help documents the start positions; bad input exits 2 saying what is wrong and how to fix it", async () => {
    const noDatabase = { DATABASE_URL: "postgres://127.0.0.1:1/none" }; // never reached: these fail before connecting
    const [help, badFrom, offsetWithoutPartition, group] = await Promise.all([
      run(["tail", "--help"]),
      run(["tail", "orders", "--from", "yesterday"], noDatabase),
      run(["tail", "orders", "--from", "12"], noDatabase),
      run(["tail", "orders", "--group", "billing", "--from", "12"], noDatabase),
    ]);
    const badGroup = await run(["tail", "orders", "--group", "bad group!"], noDatabase); // after: four boots at once are enough on a small machine
    expect([help.code, help.stderr]).toEqual([0, ""]);
    expect(help.stdout).toMatch(/^Usage: tributary tail STREAM \[--from earliest\|latest\|OFFSET\|TIME\] \[--partition N\]/);
    expect(help.stdout).toMatch(/--from POSITION +where each partition starts \(default: latest\)/);

    expect(badFrom.code, badFrom.stderr).toBe(2);
    expect(badFrom.stderr).toMatch(/^tributary tail: --from: 'yesterday' is not a start position: use earliest, latest, an offset \(e\.g\. 1200\) or an ISO 8601 time/m);
    expect(offsetWithoutPartition.code, offsetWithoutPartition.stderr).toBe(2);
    expect(offsetWithoutPartition.stderr).toMatch(/--from 12 is an offset, and offsets are per partition: add --partition N/);
    expect(group.code, group.stderr).toBe(2);
    expect(group.stderr).toMatch(/--from 12: a group starts new partitions at earliest, latest or a time; to move a group to an offset use tributary groups reset/);
    // The consumer_groups rule, checked before connecting: one clear line, not a check-constraint error retried for ever.
    expect(badGroup.code, badGroup.stderr).toBe(2);
    expect(badGroup.stderr).toBe("tributary tail: --group: invalid group name 'bad group!': a group name is 1 to 200 characters of A-Z a-z 0-9 . _ -\n");
  });

  describe("against a database", () => {
    let db: TestDatabase;
    afterEach(async () => {
      await db?.drop();
    });

    it("--from earliest prints every event as a JSON line, then new ones; SIGTERM exits 0 within 5 s", async () => {
      db = await createTestDatabase(backend);
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      try {
        await createStream(db.sql, "orders", 3);
        await appendBatch(db.sql, Array.from({ length: 6 }, (_, i) => ({
          stream: "orders", key: `o${i}`, type: "OrderPlaced", data: { i, note: "ünïcode ✓" }, headers: { traceparent: `00-${i}` },
        })));
        await waitForCount(db.sql, 6, 30_000);

        const tail = start(["tail", "orders", "--from", "earliest"], { DATABASE_URL: db.url });
        const lines = () => tail.output.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
        await eventually("6 JSON lines from tail", () => lines().length >= 6, 30_000);
        await appendBatch(db.sql, [{ stream: "orders", key: "o1", type: "OrderPaid", data: null }]);
        await eventually("the new event's line", () => lines().length >= 7, 20_000);

        const stored = await readAll(db.sql, "orders");
        const printed = lines();
        expect(printed).toHaveLength(7);
        expect(new Set(printed.map((l) => l.id))).toEqual(new Set(stored.map((e) => e.id)));
        for (const line of printed) {
          const event = stored.find((e) => e.id === line.id)!;
          expect(line).toEqual({
            stream: "orders",
            partition: event.partition,
            offset: event.offset,
            id: event.id,
            key: event.key,
            type: event.type,
            data: event.data,
            headers: event.headers,
            committed_at: event.committed_at.toISOString(),
          });
        }
        for (let p = 0; p < 3; p++) {
          const offsets = printed.filter((l) => l.partition === p).map((l) => l.offset);
          expect(offsets, `partition ${p}`).toEqual([...offsets.keys()]);
        }
        expect(printed.at(-1)).toMatchObject({ type: "OrderPaid", data: null });

        const sent = performance.now();
        tail.child.kill("SIGTERM");
        const exit = await Promise.race([tail.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
        const elapsed = performance.now() - sent;
        console.info(`tributary tail exited ${elapsed.toFixed(0)} ms after SIGTERM`);
        expect(exit, "tail was still running 10 s after SIGTERM").not.toBeNull();
        expect([exit!.code, exit!.signal], exit!.stderr).toEqual([0, null]);
        // The shutdown handler force-exits (also with 0) after 4.5 s: only a faster exit proves a clean stop.
        expect(elapsed).toBeLessThan(4500);
        expect(exit!.stderr).toMatch(/SIGTERM: stopping/);
        expect(exit!.stderr).not.toMatch(/error/i);
      } finally {
        await relay.stop();
      }
    });

    it("a dropped connection (pg_terminate_backend mid-read and idle) is retried: the tail resumes with every event exactly once, in order; a missing database exits 1 at once", async () => {
      db = await createTestDatabase(backend);
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      const tailPollMs = 2_000; // reader.ts's default fallback poll: a caught-up tail reads again at least this often
      try {
        await createStream(db.sql, "orders", 3);
        const appendEvents = (from: number, n: number) =>
          appendBatch(db.sql, Array.from({ length: n }, (_, i) => ({ stream: "orders", key: `o${from + i}`, type: "T", data: { i: from + i } })));
        await appendEvents(0, 6);
        await waitForCount(db.sql, 6, 30_000);
        const tail = start(["tail", "orders", "--from", "earliest"], { DATABASE_URL: db.url });
        const lines = () => tail.output.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
        await eventually("6 JSON lines from tail", () => lines().length >= 6, 30_000);

        // Mid-read: the stream table is locked, so tail's next read (within a poll interval) waits; then its backends are terminated.
        const locker = await db.sql.reserve();
        try {
          await locker`begin`;
          await locker`lock table tributary.events in access exclusive mode`;
          await eventually("tail's read waiting for the lock", async () => {
            const [row] = await db.sql`select count(*)::int as n from pg_stat_activity where application_name = 'tributary tail' and wait_event_type = 'Lock'`;
            return row!.n >= 1;
          }, tailPollMs * 5);
          const terminated = await db.sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'tributary tail'`;
          expect(terminated.length).toBeGreaterThanOrEqual(1);
          await locker`rollback`;
        } finally {
          locker.release();
        }
        await appendEvents(6, 4);
        await eventually("the 4 events appended after the drop", () => lines().length >= 10, 30_000);

        // Idle: terminated while waiting for events.
        await db.sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'tributary tail'`;
        await appendEvents(10, 3);
        await eventually("the 3 events appended after the second drop", () => lines().length >= 13, 30_000);
        await new Promise((r) => setTimeout(r, tailPollMs)); // a duplicate would be printed within a poll

        const stored = await readAll(db.sql, "orders");
        expect(stored).toHaveLength(13);
        const printed = lines();
        expect(printed.map((l) => l.id).sort()).toEqual(stored.map((e) => e.id).sort()); // each exactly once
        for (let p = 0; p < 3; p++) {
          expect(printed.filter((l) => l.partition === p).map((l) => l.offset), `partition ${p}`).toEqual(stored.filter((e) => e.partition === p).map((e) => e.offset));
        }
        expect(tail.output.stderr).toMatch(/connection lost \(.*\); reconnecting in \d+ ms \(attempt 1\)/);
        tail.child.kill("SIGTERM");
        const exit = await tail.exited;
        expect([exit.code, exit.signal], exit.stderr).toEqual([0, null]);

        // What cannot heal is not retried.
        const missing = new URL(db.url);
        missing.pathname = "/no_such_database";
        const gone = await run(["tail", "orders", "--database-url", missing.toString()], {}, 20_000);
        expect(gone.code, gone.stderr).toBe(1);
        expect(gone.stderr).toMatch(/^tributary tail: database "no_such_database" does not exist\n$/);
      } finally {
        await relay.stop();
      }
    });

    it("data nested 5,000 deep (in a stream from before append limited depth) is printed by tail and tail --group, which go on to the next event", async () => {
      db = await createTestDatabase(backend);
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      const depth = 5_000;
      try {
        await createStream(db.sql, "deep", 1);
        await appendBatch(db.sql, [{ stream: "deep", key: "k", type: "Before", data: { n: 1 } }]);
        // {"a": {"a": … 1 …}}: append now refuses it (max_depth), but a stream may hold
        // such an event from before; signed as append signs, so the relay writes it.
        await emitSignedEvent(db.sql, { stream: "deep", key: "k", partitions: 1, type: "Deep", dataText: '{"a":'.repeat(depth) + "1" + "}".repeat(depth) });
        await appendBatch(db.sql, [{ stream: "deep", key: "k", type: "After", data: { n: 3 } }]);
        await waitForCount(db.sql, 3, 30_000);

        const env = { DATABASE_URL: db.url };
        const parse = (out: string) => out.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
        const plain = start(["tail", "deep", "--from", "earliest"], env);
        const member = start(["tail", "deep", "--group", "gdeep", "--from", "earliest"], env);
        await eventually("3 lines from tail", () => parse(plain.output.stdout).length >= 3 || plain.child.exitCode !== null, 30_000);
        await eventually("3 lines from tail --group", () => parse(member.output.stdout).length >= 3 || member.child.exitCode !== null, 30_000);
        await eventually("gdeep committed past the deep event", async () => {
          const [row] = await db.sql`select coalesce(sum(lag), -1)::int as lag from tributary.group_lag where group_name = 'gdeep'`;
          return row?.lag === 0;
        }, 20_000);
        for (const [name, run] of [["tail", plain], ["tail --group", member]] as const) {
          const lines = parse(run.output.stdout);
          expect(lines.map((l) => [l.offset, l.type]), `${name}: ${run.output.stderr}`).toEqual([[0, "Before"], [1, "Deep"], [2, "After"]]);
          let data = lines[1]!.data as { a: unknown };
          for (let i = 0; i < depth; i++) data = data.a as { a: unknown };
          expect(data, name).toBe(1);
          expect(run.output.stderr, name).not.toMatch(/call stack|paus/i);
          run.child.kill("SIGTERM");
          expect((await run.exited).code, name).toBe(0);
        }
      } finally {
        await relay.stop();
      }
    });

    it("an unknown stream or partition exits 2 and says how to find the right one", async () => {
      db = await createTestDatabase(backend);
      await createStream(db.sql, "orders", 3);
      const [stream, groupStream, partition] = await Promise.all([
        run(["tail", "ordres", "--database-url", db.url]),
        run(["tail", "ordres", "--group", "g1", "--database-url", db.url]),
        run(["tail", "orders", "--partition", "3", "--from", "earliest"], { DATABASE_URL: db.url }),
      ]);
      expect(stream.code, stream.stderr).toBe(2);
      expect(stream.stderr).toMatch(/^tributary tail: stream 'ordres' does not exist: .*`tributary status` lists the streams/m);
      // With --group the same: told, not silently created.
      expect(groupStream.code, groupStream.stderr).toBe(2);
      expect(groupStream.stderr).toBe(stream.stderr);
      expect(await db.sql`select name from tributary.streams`).toEqual([{ name: "orders" }]);
      expect(await db.sql`select 1 from tributary.consumer_groups`).toHaveLength(0);
      expect(partition.code, partition.stderr).toBe(2);
      expect(partition.stderr).toMatch(/^tributary tail: partition 3 does not exist: stream 'orders' has 3 partitions \(0 to 2\)/m);
    });
    it("--group: an error that cannot heal (permission denied) stops the member with exit 1 after one attempt, not a retry loop", async () => {
      db = await createTestDatabase(backend);
      await createStream(db.sql, "orders", 2);
      const role = `tail_${db.slotName}`;
      await db.sql.unsafe(`create role ${role} login`);
      try {
        // It may look the stream up, nothing more: joining the group is refused.
        await db.sql.unsafe(`grant usage on schema tributary to ${role}; grant select on tributary.streams to ${role}`);
        const url = new URL(db.url);
        url.username = role;
        const member = await run(["tail", "orders", "--group", "g1"], { DATABASE_URL: url.toString() }, 20_000);
        expect(member.signal, "still retrying after 20 s").toBeNull();
        expect(member.code, member.stderr).toBe(1);
        expect(member.stderr).toMatch(/^tributary tail: permission denied for (table|function|sequence) /m);
        // One attempt: refused when it joins (migration 0007's grants), or on its first heartbeat; never a retry loop.
        expect(member.stderr.trim().split("\n"), member.stderr).toHaveLength(1);
        expect(member.stderr).not.toMatch(/retrying in|reconnecting/);
      } finally {
        await db.sql.unsafe(`drop owned by ${role}; drop role ${role}`);
      }
    });

    it("--group: two members share the partitions, commit after printing, and a restart resumes after the commits", async () => {
      db = await createTestDatabase(backend);
      const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      try {
        await createStream(db.sql, "orders", 4);
        await appendBatch(db.sql, Array.from({ length: 40 }, (_, i) => ({ stream: "orders", key: `o${i}`, type: "T", data: { i } })));
        await waitForCount(db.sql, 40, 30_000);
        const env = { DATABASE_URL: db.url };
        const parse = (out: string) => out.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
        const a = start(["tail", "orders", "--group", "billing", "--from", "earliest"], env);
        const b = start(["tail", "orders", "--group", "billing", "--from", "earliest"], env);
        await eventually("both members in the group", async () => {
          const [row] = await db.sql`select count(*)::int as n from tributary.group_members where group_name = 'billing'`;
          return row?.n === 2;
        }, 30_000);
        await eventually("all 40 events printed by the two members", () => new Set([...parse(a.output.stdout), ...parse(b.output.stdout)].map((l) => l.id)).size === 40, 30_000);
        await eventually("offsets committed to the end", async () => {
          const [row] = await db.sql`select coalesce(sum(lag), -1)::int as lag from tributary.group_lag where group_name = 'billing'`;
          return row?.lag === 0;
        }, 20_000);
        a.child.kill("SIGTERM");
        b.child.kill("SIGTERM");
        const [exitA, exitB] = await Promise.all([a.exited, b.exited]);
        expect([exitA.code, exitB.code], exitA.stderr + exitB.stderr).toEqual([0, 0]);
        const [members] = await db.sql`select count(*)::int as n from tributary.group_members where group_name = 'billing'`;
        expect(members?.n).toBe(0); // both left the group cleanly

        await appendBatch(db.sql, [{ stream: "orders", key: "o1", type: "Later", data: null }]);
        await waitForCount(db.sql, 41, 30_000);
        const again = start(["tail", "orders", "--group", "billing", "--from", "earliest"], env);
        await eventually("the new event", () => parse(again.output.stdout).length >= 1, 30_000);
        await new Promise((r) => setTimeout(r, 500));
        expect(parse(again.output.stdout).map((l) => l.type)).toEqual(["Later"]); // resumed after the commits
        again.child.kill("SIGTERM");
        expect((await again.exited).code).toBe(0);
      } finally {
        await relay.stop();
      }
    });
  });
});
