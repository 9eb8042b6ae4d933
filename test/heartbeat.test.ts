/**
 * WAL retention follows the slot: on a database busy with tables that carry
 * no events (or an idle one next to busy databases), the relay must still move
 * the slot forward, or PostgreSQL keeps the WAL forever (docs/ARCHITECTURE.md traps).
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { append } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import { waitForCount } from "./support/streams.ts";

describeBackends("slot heartbeat", (backend) => {
  let db: TestDatabase;
  let relay: RelayHandle;

  beforeEach(async () => {
    db = await createTestDatabase(backend);
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, statusIntervalMs: 300, log: () => {} });
  });
  afterEach(async () => {
    await relay.stop();
    await db.drop();
  });

  it("acknowledges WAL without events so the slot does not pin it", async () => {
    await db.sql.begin((tx) => append(tx, { stream: "s", key: "k", type: "T", data: {} }));
    await waitForCount(db.sql, 1);
    await db.sql`create table business (id int, pad text)`;
    await db.sql`insert into business select g, repeat('x', 500) from generate_series(1, 20000) g`;
    const [{ lsn }] = (await db.sql`select pg_current_wal_lsn()::text as lsn`) as unknown as [{ lsn: string }];
    const deadline = Date.now() + 15_000;
    let behind = Number.POSITIVE_INFINITY;
    while (Date.now() < deadline) {
      const [row] = await db.sql<{ behind: string }[]>`
        select (${lsn}::pg_lsn - confirmed_flush_lsn)::text as behind
          from pg_replication_slots where slot_name = ${db.slotName}`;
      behind = Number(row!.behind);
      if (behind <= 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(behind).toBeLessThanOrEqual(0);
    // And the stream is untouched by that traffic.
    const [count] = await db.sql<{ n: number }[]>`select count(*)::int as n from tributary.events`;
    expect(count!.n).toBe(1);
  });
});
