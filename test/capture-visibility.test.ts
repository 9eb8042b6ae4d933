/**
 * A snapshot chunk and a commit that is in the WAL before it is visible
 * (docs/ARCHITECTURE.md invariant 14; cdc/chunks.ts).
 *
 * PostgreSQL writes and flushes a transaction's commit record, then makes the
 * transaction visible (it leaves the proc array). In between, logical
 * decoding already hands its changes out. With a synchronous standby that
 * window lasts until the standby answers (a network round trip, or as long
 * as the standby is away); without one it is short but there.
 *
 * A chunk whose low watermark L comes after such a commit in the WAL, and
 * whose SELECT runs before that commit is visible, reads the row as it was
 * before the change; the change precedes L, so no change in the window marks
 * the row, and its stale read lands at H, after the change event. Replaying
 * the key then gives the old row, and keeps giving it until the row changes
 * again.
 *
 * KNOWN BUG, so skipped: it fails today (row 5's events are
 * [row.updated v=1, row.read v=0]). Un-skip it with the fix: the snapshotter
 * making sure every transaction that committed before L is visible to the
 * chunk's read, or the relay dropping reads such a transaction may have
 * missed. (Not `it.fails`: that would also pass on a failed set-up.)
 *
 * The standby here is `synchronous_standby_names = 'nobody'` on a cluster of
 * the test's own, with `synchronous_commit = local` as the default so that
 * only the writer's session (synchronous_commit = on) waits for it.
 */
import { expect, inject, it } from "vitest";
import pg from "pg";
import postgres from "postgres";
import { migrate } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { Cluster, findInstallation } from "@tributary/testkit";
import { eventually } from "./support/processes.ts";
import { readAll } from "./support/streams.ts";

const server = inject("servers").find((s) => s.kind !== "external");

it.skip("KNOWN BUG: a row changed by a commit decoded before a chunk's low watermark but not yet visible to its read keeps its change", async (ctx) => {
  if (!server) {
    ctx.skip("needs a cluster of its own; unset TRIBUTARY_TEST_DATABASE_URL to run it");
    return;
  }
  const installation = findInstallation(server.kind as "embedded18" | "system15");
  if ("missing" in installation) throw new Error(installation.missing);
  const cluster = await Cluster.start(installation, { settings: { synchronous_standby_names: "'nobody'", synchronous_commit: "local" } });
  const log: string[] = [];
  let sql: postgres.Sql | null = null;
  let relay: ReturnType<typeof startRelay> | null = null;
  const writer = new pg.Client({ connectionString: cluster.urlFor("visibility") });
  try {
    const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
    await admin`create database visibility`;
    await admin.end();
    const url = cluster.urlFor("visibility");
    sql = postgres(url, { max: 4, onnotice: () => {} });
    await migrate(sql, { slotName: "visibility", decoder: "pgoutput" });
    await sql`create table items (id int primary key, v int not null)`;
    await sql`insert into items select g, 0 from generate_series(1, 100) g`;
    await sql`select tributary.capture('items', '{"snapshot": "none", "partitions": 1}')`;
    relay = startRelay({ databaseUrl: url, slotName: "visibility", log: (m) => log.push(m), snapshotPollMs: 100 });

    // The update commits locally and waits for the standby: decodable, not yet visible.
    await writer.connect();
    await writer.query("set synchronous_commit = on");
    const { rows } = await writer.query<{ pid: number }>("select pg_backend_pid() as pid");
    const committing = writer.query("update items set v = 1 where id = 5").catch((e: Error) => e);
    await eventually("the update's change event", async () => (await readAll(sql!, "public.items")).some((e) => e.key === "5"), 30_000);
    expect((await sql`select v from items where id = 5`)[0]!.v, "the update is not visible yet").toBe(0);

    // A snapshot now: its chunk's low watermark follows the update's commit in the WAL.
    await sql`select tributary.backfill('items')`;
    await eventually("the snapshot to end", async () => (await sql!`select state from tributary.captures`)[0]!.state === "streaming", 30_000);
    // The standby "answers": the wait is cancelled, the committed update becomes visible.
    await sql`select pg_cancel_backend(${rows[0]!.pid})`;
    await committing;
    expect((await sql`select v from items where id = 5`)[0]!.v).toBe(1);

    await sql`select tributary.append('marker', 'm', 'marker', '{}')`;
    await eventually("the relay to pass the marker", async () => (await readAll(sql!, "marker")).length === 1, 30_000);
    const row5 = (await readAll(sql, "public.items")).filter((e) => e.key === "5").map((e) => [e.type, (e.data as { after: { v: number } }).after.v]);
    // Today: [["row.updated", 1], ["row.read", 0]]: the stream replays row 5 as v = 0.
    expect(row5[row5.length - 1]![1], `row 5's events ${JSON.stringify(row5)}: the last must be its row (v = 1)`).toBe(1);
  } finally {
    await writer.end().catch(() => undefined);
    await relay?.stop();
    await sql?.end({ timeout: 1 });
    await cluster.destroy();
  }
});
