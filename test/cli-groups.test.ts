/**
 * `tributary groups`, `tributary groups reset` and `tributary status` as a user
 * runs them (the CLI in its own process), against a real database whose
 * partition ends come from a real relay.
 *
 * The consumer-group runtime (join, heartbeat, rebalance, commit) is not
 * ready yet, so groups are set up by writing group_members,
 * group_assignments and group_offsets rows directly with SQL: what the
 * runtime would have left behind. (Only the fencing check uses the runtime's
 * commitOffsets.)
 *
 * None of this depends on the WAL decoder: it runs once per server (pgoutput).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, createStream, partitionFor, TributaryGroupError } from "@tributary/client";
import { commitOffsets } from "@tributary/client/internals";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { waitForCount } from "./support/streams.ts";
import { runCli as run } from "./support/cli.ts";


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PARTITIONS = 4;
// Batch 1 is appended before `midpoint`, batch 2 after; every partition gets
// at least 3 events of batch 1 (checked below), so offset 2 exists everywhere.
const batch1 = Array.from({ length: 24 }, (_, i) => `a${i}`);
const batch2 = Array.from({ length: 9 }, (_, i) => `b${i}`);

function countPerPartition(keys: string[]): number[] {
  const counts = new Array<number>(PARTITIONS).fill(0);
  for (const key of keys) counts[partitionFor(key, PARTITIONS)]! += 1;
  return counts;
}

const before = countPerPartition(batch1);
const after = countPerPartition(batch2);
const ends = before.map((n, p) => n + after[p]!);

interface GroupJson {
  group: string;
  generation: number;
  members: Array<{ memberId: string; client: string | null; streams: string[]; alive: boolean; sessionTimeoutMs: number }>;
  partitions: Array<{
    stream: string; partition: number; owner: string | null; generation: number | null;
    committedOffset: number | null; endOffset: number; lag: number; committedAt: string | null;
  }>;
  lag: number;
}

for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`tributary groups and status [${backend.name}]`, () => {
    let db: TestDatabase;
    let relay: RelayHandle;
    let midpoint: Date;
    let env: Record<string, string>;

    const offsets = async (group: string): Promise<Array<number | null>> => {
      const rows = await db.sql<{ partition: number; next_offset: string }[]>`
        select partition, next_offset::text from tributary.group_offsets where group_name = ${group} and stream = 'orders'`;
      return Array.from({ length: PARTITIONS }, (_, p) => {
        const row = rows.find((r) => r.partition === p);
        return row ? Number(row.next_offset) : null;
      });
    };

    const setOffsets = async (group: string, values: Array<number | null>) => {
      await db.sql`insert into tributary.consumer_groups (group_name) values (${group}) on conflict do nothing`;
      await db.sql`delete from tributary.group_offsets where group_name = ${group}`;
      for (const [p, v] of values.entries()) {
        if (v !== null) await db.sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values (${group}, 'orders', ${p}, ${v})`;
      }
    };

    beforeAll(async () => {
      expect(Math.min(...before), "every partition needs 3 events of batch 1").toBeGreaterThanOrEqual(3);
      db = await createTestDatabase(backend);
      env = { DATABASE_URL: db.url };
      await createStream(db.sql, "orders", PARTITIONS);
      await createStream(db.sql, "empty", 2);
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      await db.sql.begin((tx) => appendBatch(tx, batch1.map((key) => ({ stream: "orders", key, type: "OrderPlaced", data: { key } }))));
      await waitForCount(db.sql, batch1.length, 30_000);
      await sleep(20);
      const [row] = await db.sql<{ t: Date }[]>`select clock_timestamp() as t`;
      midpoint = row!.t;
      await sleep(20);
      await db.sql.begin((tx) => appendBatch(tx, batch2.map((key) => ({ stream: "orders", key, type: "OrderPaid", data: { key } }))));
      await waitForCount(db.sql, batch1.length + batch2.length, 30_000);

      // "billing": one live member owning every partition of orders (generation 3);
      // commits on partitions 0 and 1, none on 2, partition 3 fully handled.
      await db.sql`insert into tributary.consumer_groups (group_name, generation) values ('billing', 3)`;
      await db.sql`
        insert into tributary.group_members (group_name, member_id, streams, session_timeout, client)
        values ('billing', 'm1', '{orders}', interval '30 seconds', 'host-a:123')`;
      for (let p = 0; p < PARTITIONS; p++) {
        await db.sql`insert into tributary.group_assignments (group_name, stream, partition, member_id, generation) values ('billing', 'orders', ${p}, 'm1', 3)`;
      }
      await setOffsets("billing", [1, 0, null, ends[3]!]);
    });

    afterAll(async () => {
      await relay?.stop();
      await db?.drop();
    });

    const billingLag = [ends[0]! - 1, ends[1]!, ends[2]!, 0];
    const billingTotal = billingLag.reduce((a, b) => a + b, 0);

    it("groups --json: one line per group with members, owners, committed offsets, ends and lag; the table shows the same", async () => {
      await setOffsets("idle", [0, 0, 0, 0]);
      const [json, table, one] = await Promise.all([
        run(["groups", "--json"], env),
        run(["groups", "--database-url", db.url]),
        run(["groups", "--group", "billing", "--json"], env),
      ]);
      for (const r of [json, table, one]) expect([r.code, r.stderr]).toEqual([0, ""]);
      const lines = json.stdout.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      const [billing, idle] = lines.map((l) => JSON.parse(l) as GroupJson);
      expect(billing!.group).toBe("billing");
      expect(billing!.generation).toBe(3);
      expect(billing!.members).toEqual([
        expect.objectContaining({ memberId: "m1", client: "host-a:123", streams: ["orders"], alive: true, sessionTimeoutMs: 30_000 }),
      ]);
      expect(billing!.partitions.map((p) => [p.stream, p.partition, p.owner, p.generation, p.committedOffset, p.endOffset, p.lag])).toEqual([
        ["orders", 0, "m1", 3, 1, ends[0], billingLag[0]],
        ["orders", 1, "m1", 3, 0, ends[1], billingLag[1]],
        ["orders", 2, "m1", 3, null, ends[2], billingLag[2]],
        ["orders", 3, "m1", 3, ends[3], ends[3], 0],
      ]);
      expect(billing!.partitions[2]!.committedAt).toBeNull();
      expect(billing!.partitions[0]!.committedAt).toMatch(/^\d{4}-\d{2}-\d{2}T/);
      expect(billing!.lag).toBe(billingTotal);
      expect(idle).toMatchObject({ group: "idle", members: [], lag: ends.reduce((a, b) => a + b, 0) });

      expect(one.stdout.trimEnd().split("\n").map((l) => (JSON.parse(l) as GroupJson).group)).toEqual(["billing"]);

      expect(table.stdout).toMatch(new RegExp(`^GROUP billing +generation 3 +members 1 \\(1 alive\\) +lag ${billingTotal}$`, "m"));
      expect(table.stdout).toMatch(/^ +m1 +alive +orders .* host-a:123$/m);
      // LOW: the low watermark, 0 with nothing expired.
      expect(table.stdout).toMatch(new RegExp(`^ +orders +0 +m1 +3 +0 +1 +${ends[0]} +${billingLag[0]} +\\d{4}-`, "m"));
      expect(table.stdout).toMatch(new RegExp(`^ +orders +2 +m1 +3 +0 +- +${ends[2]} +${billingLag[2]} +-$`, "m"));
      expect(table.stdout).not.toMatch(/BEHIND RETENTION/);
      expect(table.stdout).toMatch(/^GROUP idle /m);
    });

    it("groups reset: a new group to latest (creating it), then to earliest, to an offset and to a time; prints old → new", async () => {
      const latest = await run(["groups", "reset", "fresh", "--stream", "orders", "--to", "latest"], env);
      expect(latest.code, latest.stderr).toBe(0);
      expect(await offsets("fresh")).toEqual(ends);
      expect(latest.stdout).toMatch(/^reset group 'fresh' on stream 'orders' to latest \(created the group\):$/m);
      for (let p = 0; p < PARTITIONS; p++) expect(latest.stdout).toMatch(new RegExp(`^  partition ${p}: - → ${ends[p]}$`, "m"));

      const earliest = await run(["groups", "reset", "fresh", "--stream", "orders", "--to", "earliest"], env);
      expect(earliest.code, earliest.stderr).toBe(0);
      expect(earliest.stdout).not.toMatch(/created/);
      for (let p = 0; p < PARTITIONS; p++) expect(earliest.stdout).toMatch(new RegExp(`^  partition ${p}: ${ends[p]} → 0$`, "m"));
      expect(await offsets("fresh")).toEqual([0, 0, 0, 0]);

      const offset = await run(["groups", "reset", "fresh", "--stream", "orders", "--to", "2", "--json"], env);
      expect(offset.code, offset.stderr).toBe(0);
      expect(JSON.parse(offset.stdout)).toEqual({
        group: "fresh", stream: "orders", createdGroup: false,
        partitions: [0, 1, 2, 3].map((partition) => ({ partition, previous: 0, next: 2 })),
      });
      expect(await offsets("fresh")).toEqual([2, 2, 2, 2]);

      // Per partition, the first event committed at or after the time: the first of batch 2 (or the end).
      const time = await run(["groups", "reset", "fresh", "--stream", "orders", "--to", midpoint.toISOString()], env);
      expect(time.code, time.stderr).toBe(0);
      expect(await offsets("fresh")).toEqual(before);
      for (let p = 0; p < PARTITIONS; p++) expect(time.stdout).toMatch(new RegExp(`^  partition ${p}: 2 → ${before[p]}$`, "m"));

      const [events] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.group_offsets where group_name = 'fresh'`;
      expect(events!.n).toBe(PARTITIONS);
    });

    it("groups reset refuses while a member subscribed to the stream is alive, and goes ahead once its session timed out", async () => {
      // Alive means a heartbeat within its 30 s session timeout: the tests before this one may have taken longer.
      await db.sql`update tributary.group_members set heartbeat_at = now() where group_name = 'billing' and member_id = 'm1'`;
      const refused = await run(["groups", "reset", "billing", "--stream", "orders", "--to", "earliest"], env);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/^tributary groups: consumer group 'billing' has 1 live member subscribed to stream 'orders': m1 \(host-a:123\)\./m);
      expect(refused.stderr).toMatch(/Stop it and reset again, or wait for its session timeout/);
      expect(refused.stdout).toBe("");
      expect(await offsets("billing")).toEqual([1, 0, null, ends[3]]);

      // The same member, its last heartbeat older than its session timeout: not alive.
      await db.sql`update tributary.group_members set heartbeat_at = now() - interval '31 seconds' where group_name = 'billing' and member_id = 'm1'`;
      const [accepted, described] = await Promise.all([
        run(["groups", "reset", "billing", "--stream", "orders", "--to", "earliest"], env),
        run(["groups", "--group", "billing", "--json"], env),
      ]);
      expect(accepted.code, accepted.stderr).toBe(0);
      expect(await offsets("billing")).toEqual([0, 0, 0, 0]);
      expect(accepted.stdout).toMatch(/^  partition 2: - → 0$/m);
      expect((JSON.parse(described.stdout) as GroupJson).members[0]!.alive).toBe(false);

      // m1 may still be running (paused, cut off): the reset fenced it, so a
      // commit of its in-memory position under its old generation is rejected.
      const stale = await commitOffsets(db.sql, "billing", "m1", [{ stream: "orders", partition: 0, generation: 3, nextOffset: 5 }])
        .then(() => null, (e: unknown) => e);
      expect(stale).toBeInstanceOf(TributaryGroupError);
      expect((stale as TributaryGroupError).code).toBe("STALE_GENERATION");
      expect(await offsets("billing")).toEqual([0, 0, 0, 0]);

      await setOffsets("billing", [1, 0, null, ends[3]!]);
      await db.sql`update tributary.group_members set heartbeat_at = now() where group_name = 'billing'`;
      for (let p = 0; p < PARTITIONS; p++) {
        await db.sql`insert into tributary.group_assignments (group_name, stream, partition, member_id, generation) values ('billing', 'orders', ${p}, 'm1', 3)`;
      }
    });

    it("bad input exits 2 with a message that says what is wrong, and changes nothing", async () => {
      await setOffsets("bounded", [1, 1, 1, 1]);
      const highest = Math.max(...ends);
      const lowest = Math.min(...ends);
      const narrowest = ends.indexOf(lowest);
      const [beyond, stream, to, missing, group, name, sub, noDb] = await Promise.all([
        run(["groups", "reset", "bounded", "--stream", "orders", "--to", String(highest)], env),
        run(["groups", "reset", "bounded", "--stream", "nope", "--to", "earliest"], env),
        run(["groups", "reset", "bounded", "--stream", "orders", "--to", "yesterday"], env),
        run(["groups", "reset", "bounded", "--to", "earliest"], env),
        run(["groups", "--group", "nobody"], env),
        run(["groups", "reset", "bad name", "--stream", "orders", "--to", "earliest"], env),
        run(["groups", "frobnicate"], env),
        run(["groups"]),
      ]);
      for (const r of [beyond, stream, to, missing, group, name, sub, noDb]) {
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe("");
      }
      expect(highest).toBeGreaterThan(lowest);
      expect(beyond.stderr).toContain(`offset ${highest} is beyond the end of stream 'orders' partition ${narrowest} (end ${lowest})`);
      expect(stream.stderr).toMatch(/stream 'nope' does not exist/);
      expect(to.stderr).toMatch(/--to yesterday: not earliest, latest, an offset or an ISO 8601 time/);
      expect(missing.stderr).toMatch(/--stream is required/);
      expect(group.stderr).toMatch(/consumer group 'nobody' does not exist/);
      expect(name.stderr).toMatch(/invalid group name "bad name"/);
      expect(sub.stderr).toMatch(/unknown subcommand 'frobnicate'/);
      expect(noDb.stderr).toMatch(/DATABASE_URL/);
      expect(await offsets("bounded")).toEqual([1, 1, 1, 1]);
      const [created] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.consumer_groups where group_name in ('nobody', 'bad name')`;
      expect(created!.n).toBe(0);
    });

    it("status shows stream counts, the relay as active (and a standby), and each group's members and lag", async () => {
      await db.sql`delete from tributary.consumer_groups where group_name not in ('billing')`;
      await db.sql`update tributary.group_members set heartbeat_at = now() where group_name = 'billing' and member_id = 'm1'`;
      const logs: string[] = [];
      const standby = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: (m) => logs.push(m) });
      try {
        const deadline = Date.now() + 20_000;
        while (!logs.some((m) => /standby/.test(m))) {
          if (Date.now() > deadline) throw new Error(`the second relay did not wait as a standby: ${logs.join("; ")}`);
          await sleep(50);
        }
        const [json, table] = await Promise.all([run(["status", "--json"], env), run(["status"], env)]);
        for (const r of [json, table]) expect([r.code, r.stderr]).toEqual([0, ""]);
        const status = JSON.parse(json.stdout) as {
          streams: unknown[];
          relays: Array<{ slot: string; active: boolean; state: string; standbys: number | null; lagBytes: number; lagSeconds: number; walRetainedBytes: number; walStatus: string }>;
          standbyRelays: number;
          groups: unknown[];
        };
        expect(status.streams).toEqual([
          { stream: "empty", partitions: 2, events: 0, retained: 0, lowWatermarks: [0, 0], retention: null, bytes: expect.any(Number) },
          { stream: "orders", partitions: PARTITIONS, events: batch1.length + batch2.length, retained: batch1.length + batch2.length, lowWatermarks: Array(PARTITIONS).fill(0), retention: null, bytes: expect.any(Number) },
        ]);
        expect(status.relays).toHaveLength(1);
        expect(status.relays[0]).toMatchObject({ slot: db.slotName, active: true, state: "active", standbys: 1, walStatus: expect.any(String) });
        expect(status.standbyRelays).toBe(1);
        for (const field of ["lagBytes", "lagSeconds", "walRetainedBytes"] as const) expect(typeof status.relays[0]![field]).toBe("number");
        expect(status.groups).toEqual([{ group: "billing", generation: 3, members: 1, aliveMembers: 1, lag: billingTotal }]);

        const total = batch1.length + batch2.length;
        expect(table.stdout).toMatch(new RegExp(`^orders +${PARTITIONS} +${total} +${total} +[\\d.]+ kB +everything$`, "m"));
        expect(table.stdout).toMatch(new RegExp(`^${db.slotName} +pgoutput +active +1 `, "m"));
        expect(table.stdout).toMatch(new RegExp(`^billing +1 \\(1\\) +${billingTotal}$`, "m"));
      } finally {
        await standby.stop();
      }

      // Without a relay: the slot is idle, nobody waits.
      // (The server ends the relay's backends a moment after its connections close.)
      await relay.stop();
      const deadline = Date.now() + 10_000;
      let idle = await run(["status", "--json"], env);
      while (idle.code === 0 && JSON.parse(idle.stdout).relays[0].active && Date.now() < deadline) {
        await sleep(200);
        idle = await run(["status", "--json"], env);
      }
      expect(idle.code, idle.stderr).toBe(0);
      expect(JSON.parse(idle.stdout).relays[0]).toMatchObject({ active: false, state: "idle", standbys: 0 });
    });
  });
}
