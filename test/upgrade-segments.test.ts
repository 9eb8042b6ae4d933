/**
 * The upgrade to the segmented stream table (migrations/0010_stream_segments.sql,
 * docs/ARCHITECTURE.md invariants 2 and 15): a database on the schema before
 * it, holding events in the flat table, consumer group offsets and events
 * still in the WAL, is migrated; no event is lost or renumbered, the groups
 * resume where they were, and the relay goes on with dense offsets.
 */
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, consumer, type StreamEvent } from "@tributary/client";
import { defaultMigrationsDir, migrate, readMigrations } from "@tributary/migrate";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";
import { assertDense, readAll, waitForCount } from "./support/streams.ts";

const BEFORE_SEGMENTS = 10;

/** A migrations folder holding the files before `version` (links to the repository's). */
function migrationsBefore(version: number): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "tributary-migrations-"));
  for (const file of readMigrations().filter((m) => m.version < version)) {
    const name = `${String(file.version).padStart(4, "0")}_${file.name}.sql`;
    symlinkSync(join(defaultMigrationsDir, name), join(dir, name));
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const pgoutput = backends().filter((b) => b.decoder === "pgoutput");

for (const backend of pgoutput) {
  describe(`upgrade to stream segments [${backend.name}]`, () => {
    let db: TestDatabase;
    let relay: RelayHandle | undefined;
    const old = migrationsBefore(BEFORE_SEGMENTS);

    // What the relay of the schema before wrote: dense offsets per partition, their next offsets.
    const stored = { orders: [700, 0, 350, 1_201], audit: [90] } as const;
    const committed = { orders: [500, 0, 350, 3] } as const;

    beforeAll(async () => {
      db = await createTestDatabase(backend, { migrate: false });
      await migrate(db.sql, { slotName: db.slotName, decoder: backend.decoder, migrationsDir: old.dir });
      const [flat] = await db.sql<{ relkind: string }[]>`select relkind from pg_class where oid = 'tributary.events'::regclass`;
      expect(flat!.relkind).toBe("r");
      for (const [stream, counts] of Object.entries(stored)) {
        await db.sql`select tributary.create_stream(${stream}, ${counts.length})`;
        for (const [partition, count] of counts.entries()) {
          if (count === 0) continue;
          await db.sql`
            insert into tributary.events (stream, partition, "offset", id, key, type, data, headers, committed_at)
            select ${stream}, ${partition}, o, gen_random_uuid(), 'k' || o, 'Stored', jsonb_build_object('o', o, 'pad', repeat('x', o % 97)),
                   jsonb_build_object('h', o), now() - interval '1 day' + o * interval '1 ms'
              from generate_series(0, ${count - 1}) o`;
          await db.sql`insert into tributary.partition_offsets (stream, partition, next_offset) values (${stream}, ${partition}, ${count})`;
        }
      }
      await db.sql`insert into tributary.consumer_groups (group_name) values ('billing')`;
      for (const [partition, next] of committed.orders.entries()) {
        await db.sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('billing', 'orders', ${partition}, ${next})`;
      }
      // Appended before the upgrade, not relayed yet: in the WAL only.
      await db.sql.begin((tx) => appendBatch(tx, Array.from({ length: 200 }, (_, i) => ({ stream: "orders", key: `w${i}`, type: "Waiting", data: { i } }))));
    });

    afterAll(async () => {
      await relay?.stop();
      await db?.drop();
      old.remove();
    });

    const fingerprint = async () => {
      const [row] = await db.sql<{ rows: string; digest: string }[]>`
        select count(*)::text as rows,
               md5(string_agg(concat_ws('|', stream, partition, "offset", id, key, type, data::text, headers::text, committed_at::text), E'\\n'
                              order by stream, partition, "offset")) as digest
          from tributary.events`;
      return row!;
    };
    const groupOffsets = () => db.sql`select stream, partition, next_offset::text from tributary.group_offsets order by 1, 2`;
    const nextOffsets = () => db.sql`select stream, partition, next_offset::text from tributary.partition_offsets order by 1, 2`;

    it("moves every event into its stream's first segment with its offset, and keeps the group offsets", async () => {
      const before = { events: await fingerprint(), groups: await groupOffsets(), next: await nextOffsets() };
      expect(Number(before.events.rows)).toBe(700 + 350 + 1_201 + 90);

      const result = await migrate(db.sql, { slotName: db.slotName, decoder: backend.decoder });
      expect(result.applied.map((m) => m.version)).toContain(BEFORE_SEGMENTS);

      expect(await fingerprint()).toEqual(before.events);
      expect(await groupOffsets()).toEqual(before.groups);
      expect(await nextOffsets()).toEqual(before.next);
      const [layout] = await db.sql<{ relkind: string; streams: string; unsegmented: string }[]>`
        select (select relkind::text from pg_class where oid = 'tributary.events'::regclass) as relkind,
               (select count(*)::text from pg_inherits where inhparent = 'tributary.events'::regclass) as streams,
               (select count(*)::text from tributary.events where segment <> 0) as unsegmented`;
      expect(layout).toEqual({ relkind: "p", streams: "2", unsegmented: "0" });
      const segments = await db.sql<{ stream: string; segment: number; first_offsets: string[] }[]>`
        select stream, segment, first_offsets::text[] from tributary.segments order by stream, segment`;
      expect(segments).toEqual([
        { stream: "audit", segment: 0, first_offsets: ["0"] },
        { stream: "orders", segment: 0, first_offsets: ["0", "0", "0", "0"] },
      ]);
      const [gone] = await db.sql<{ n: string }[]>`select count(*)::text as n from pg_class where relname = 'events_before_segments'`;
      expect(gone!.n).toBe("0");
    });

    it("relays what was waiting in the WAL after the stored offsets, dense, and the group resumes from its offsets", async () => {
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
      const total = 700 + 350 + 1_201 + 90 + 200;
      await waitForCount(db.sql, total);
      const events = await readAll(db.sql);
      assertDense(events);
      const waiting = events.filter((e) => e.type === "Waiting");
      expect(waiting).toHaveLength(200);
      for (const e of waiting) expect(e.offset, `${e.partition}/${e.offset} renumbers a stored event`).toBeGreaterThanOrEqual(stored.orders[e.partition]!);

      const handled: StreamEvent[] = [];
      const member = await consumer(db.sql, { group: "billing", streams: ["orders"], sessionTimeoutMs: 2_000, log: () => {}, handler: (e) => void handled.push(e) });
      try {
        const ordersTotal = events.filter((e) => e.stream === "orders").length;
        const expected = ordersTotal - committed.orders.reduce((a: number, b: number) => a + b, 0);
        await eventually(`the group handles the ${expected} events past its offsets`, () => handled.length >= expected, 30_000);
        await member.stop();
        expect(handled).toHaveLength(expected);
        for (const e of handled) expect(e.offset).toBeGreaterThanOrEqual(committed.orders[e.partition]!);
      } finally {
        await member.stop();
      }
    });

    it("keeps the stream table append-only", async () => {
      await expect(db.sql`delete from tributary.events where stream = 'audit'`).rejects.toThrow(/append-only: DELETE is not allowed/);
      await expect(db.sql`truncate tributary.events`).rejects.toThrow(/append-only: TRUNCATE is not allowed/);
      await expect(db.sql`update tributary.events set type = 'x' where stream = 'audit'`).rejects.toThrow(/append-only: UPDATE is not allowed/);
    });

    it("gives a stream created after the upgrade its own table", async () => {
      await db.sql.begin((tx) => appendBatch(tx, [{ stream: "later", key: "k", type: "T", data: {} }]));
      await waitForCount(db.sql, 700 + 350 + 1_201 + 90 + 200 + 1);
      const [row] = await db.sql<{ events_table: string; segments: string }[]>`
        select s.events_table, (select count(*)::text from tributary.segments g where g.stream = s.name) as segments
          from tributary.streams s where s.name = 'later'`;
      expect(row!.segments).toBe("1");
      expect(row!.events_table).toMatch(/^events\.later\.[0-9a-f]{12}$/);
      const [partition] = await db.sql<{ parent: string }[]>`
        select inhparent::regclass::text as parent from pg_inherits where inhrelid = ${`tributary."${row!.events_table}"`}::regclass`;
      expect(partition!.parent).toBe("tributary.events");
    });
  });
}
