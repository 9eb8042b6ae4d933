/**
 * `tributary capture add | remove | list | backfill` and the captures of
 * `tributary status`, as a user runs them (the CLI in its own process),
 * against a real database: what they print, their exit codes, and what the
 * SQL API left in tributary.captures. Snapshots are read by a real relay,
 * held after its first snapshot batch (a batch hook) so a snapshot in
 * progress is seen at a known row count, not at whatever count a fast or
 * slow machine reaches. The CLI does not depend on the WAL decoder: one
 * backend.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { runCli as run, startCli as start, killCliChildren } from "./support/cli.ts";
import { eventually } from "./support/processes.ts";
import { readAll } from "./support/streams.ts";

const backend = backends()[0]!;

interface Progress {
  table: string;
  stream: string;
  captureId: number;
  state: "waiting" | "snapshotting" | "done" | "stopped" | "superseded";
  rowsDone: number;
  rowsEstimated: number | null;
  percent: number | null;
  filter: string | null;
  stopReason: string | null;
  relayActive: boolean;
}

interface CaptureJson {
  table: string;
  stream: string;
  state: string;
  stopReason: string | null;
  rowsDone: number;
  rowsEstimated: number | null;
  keyColumns: string[];
  columns: string[] | null;
  startedAt: string;
  captureId: number;
}

interface StatusJson {
  captures: Array<{ table: string; stream: string; state: string; rowsDone: number; rowsEstimated: number | null; stopReason: string | null }>;
}

const jsonLines = <T>(stdout: string): T[] => stdout.trimEnd().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as T);

describe(`tributary capture [${backend.name}]`, () => {
  let db: TestDatabase | undefined;
  let relay: RelayHandle | null = null;
  afterEach(async () => {
    killCliChildren();
    await relay?.stop();
    relay = null;
    await db?.drop();
    db = undefined;
  });

  const captures = async () =>
    db!.sql<{ table: string; stream: string; state: string; stop_reason: string | null; columns: string[] | null }[]>`
      select "table", stream, state, stop_reason, columns from tributary.captures order by "table"`;

  // Each run boots the CLI (about a second of CPU): few runs, at most four at once.
  it("prints usage for capture --help and a subcommand's --help; a missing subcommand exits 2 with the usage", async () => {
    const [top, add, backfill, bare] = await Promise.all([
      run(["capture", "--help"]),
      run(["capture", "add", "--help"]),
      run(["capture", "backfill", "--help"]),
      run(["capture"]),
    ]);
    for (const r of [top, add, backfill]) expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(top.stdout).toMatch(/^Usage: tributary capture add TABLE/);
    for (const sub of ["add", "remove", "list", "backfill"]) expect(top.stdout).toMatch(new RegExp(`^  ${sub} `, "m"));
    expect(add.stdout).toMatch(/^Usage: tributary capture add TABLE \[--stream S\] \[--partitions N\] \[--snapshot initial\|none\] \[--columns a,b,c\] \[--wait\]/);
    for (const flag of ["--stream S", "--partitions N", "--snapshot MODE", "--columns a,b,c", "--wait", "--json"]) expect(add.stdout).toContain(`  ${flag} `);
    expect(backfill.stdout).toMatch(/^Usage: tributary capture backfill TABLE \[--where CONDITION\] \[--wait\]/);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/^tributary capture: no subcommand given\n\nUsage: tributary capture add/);
  });

  it("add, list and remove: says what it did, refuses bad input with the SQL API's message and hint (exit 2), and leaves the captures view as said", async () => {
    db = await createTestDatabase(backend);
    const env = { DATABASE_URL: db.url };
    await db.sql`create table orders (id int primary key, note text)`;
    await db.sql`create table items (id int primary key, label text, secret text)`;
    await db.sql`create table nokey (a int)`;
    const [first, noKey, badSnapshot] = await Promise.all([
      run(["capture", "add", "orders", "--snapshot", "none", "--partitions", "2", "--json"], env),
      run(["capture", "add", "nokey"], env),
      run(["capture", "add", "orders", "--snapshot", "later"], env),
    ]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/^tributary capture: capture\(nokey\): nokey has no primary key and no replica identity index, .* \(Add a primary key \(ALTER TABLE nokey ADD PRIMARY KEY/);
    expect(badSnapshot.code).toBe(2);
    expect(badSnapshot.stderr).toBe("tributary capture: --snapshot must be initial (the existing rows first) or none, not 'later'\n");
    expect([first.code, first.stderr]).toEqual([0, ""]);
    expect(JSON.parse(first.stdout)).toMatchObject({ table: "public.orders", stream: "public.orders", alreadyCaptured: false, snapshot: "none", keyColumns: ["id"], columns: null });
    const [streamRow] = await db.sql<{ partitions: number }[]>`select partitions from tributary.streams where name = 'public.orders'`;
    expect(streamRow?.partitions).toBe(2);

    const [again, otherOptions, items, missing] = await Promise.all([
      run(["capture", "add", "orders", "--snapshot", "none"], env),
      run(["capture", "add", "orders"], env), // snapshot initial: other options
      run(["capture", "add", "items", "--stream", "inventory", "--columns", "label", "--snapshot", "none"], env),
      run(["capture", "add", "nosuch"], env),
    ]);
    expect([again.code, again.stderr]).toEqual([0, ""]);
    expect(again.stdout).toBe("public.orders is already captured into stream 'public.orders' with these options: nothing changed\n");
    expect([items.code, items.stderr]).toEqual([0, ""]);
    expect(items.stdout).toBe("captured public.items into stream 'inventory' (key id, columns id, label; no snapshot: changes from now on only)\n");
    expect(otherOptions.code).toBe(2);
    expect(otherOptions.stderr).toBe(
      "tributary capture: capture(orders): orders is already captured into stream public.orders with other options (snapshot none, columns all) " +
        "(To change them: tributary capture remove orders, then tributary capture add orders again with the new flags.)\n");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tributary capture: relation "nosuch" does not exist: give the table as \[schema\.\]table/);
    expect(await captures()).toEqual([
      { table: "public.items", stream: "inventory", state: "streaming", stop_reason: null, columns: ["id", "label"] },
      { table: "public.orders", stream: "public.orders", state: "streaming", stop_reason: null, columns: null },
    ]);

    const removed = await run(["capture", "remove", "orders"], env);
    expect([removed.code, removed.stderr]).toEqual([0, ""]);
    expect(removed.stdout).toBe("stopped capturing public.orders: stream 'public.orders' keeps its events\n");
    const [removedAgain, notCaptured, listJson, list] = await Promise.all([
      run(["capture", "remove", "public.orders", "--json"], env),
      run(["capture", "backfill", "orders"], env),
      run(["capture", "list", "--json"], env),
      run(["capture", "list"], env),
    ]);
    expect([removedAgain.code, removedAgain.stderr]).toEqual([0, ""]);
    expect(JSON.parse(removedAgain.stdout)).toEqual({ table: "public.orders", removed: false, stream: null });
    expect(notCaptured.code).toBe(2);
    expect(notCaptured.stderr).toBe("tributary capture: backfill(orders): orders is not captured (Capture it first: tributary capture add orders)\n");
    expect([listJson.code, listJson.stderr]).toEqual([0, ""]);
    const listed = jsonLines<CaptureJson>(listJson.stdout);
    expect(listed.map((c) => [c.table, c.stream, c.state, c.stopReason, c.keyColumns, c.columns])).toEqual([
      ["public.items", "inventory", "streaming", null, ["id"], ["id", "label"]],
      ["public.orders", "public.orders", "stopped", "uncaptured", ["id"], null],
    ]);
    expect([list.code, list.stderr]).toEqual([0, ""]);
    const [header, ...rows] = list.stdout.trimEnd().split("\n");
    expect(header!.trim().split(/\s{2,}/)).toEqual(["TABLE", "STREAM", "STATE", "ROWS", "STARTED", "LAST CHANGE", "STOP REASON"]);
    expect(rows.map((r) => r.trim().split(/\s{2,}/))).toEqual([
      ["public.items", "inventory", "streaming", "-", listed[0]!.startedAt, "-", "-"],
      ["public.orders", "public.orders", "stopped", "-", listed[1]!.startedAt, "-", "uncaptured"],
    ]);
    expect(await captures()).toMatchObject([{ table: "public.items", state: "streaming" }, { table: "public.orders", state: "stopped", stop_reason: "uncaptured" }]);
  });

  it("--wait ends with exit 1 when the capture stops or a backfill asked since starts the snapshot over; a bad --where exits 2", async () => {
    db = await createTestDatabase(backend);
    const env = { DATABASE_URL: db.url };
    await db.sql`create table orders (id int primary key, note text)`;
    await db.sql`create table items (id int primary key)`;
    // No relay runs: both snapshots stay waiting until the test acts.
    const removedWhileWaiting = start(["capture", "add", "orders", "--wait"], env);
    const items = await run(["capture", "add", "items", "--snapshot", "none"], env);
    expect([items.code, items.stderr]).toEqual([0, ""]);
    await eventually("add --wait to say it waits for the relay", () =>
      removedWhileWaiting.output.stderr.includes("snapshot of public.orders: waiting for the relay to start it (no relay is running on this database: start tributary relay)\n"));
    const superseded = start(["capture", "backfill", "items", "--where", "id > 10", "--wait", "--json"], env);
    const badWhere = await run(["capture", "backfill", "orders", "--where", "nosuch > 1"], env);
    expect(badWhere.code).toBe(2);
    expect(badWhere.stderr).toMatch(/^tributary capture: backfill\(orders\): the filter 'nosuch > 1' is not a valid WHERE condition on orders: column "nosuch" does not exist \(Pass a condition/);
    await eventually("backfill --wait --json to say it waits", () => jsonLines<Progress>(superseded.output.stdout).some((p) => p.state === "waiting"));

    await db.sql`select tributary.uncapture('orders')`;
    await db.sql`select tributary.backfill('items')`;
    const [stopped, startedOver] = await Promise.all([removedWhileWaiting.exited, superseded.exited]);
    expect(stopped.code).toBe(1);
    expect(stopped.stdout).toBe("captured public.orders into stream 'public.orders' (key id; the relay reads its existing rows first)\n");
    expect(stopped.stderr).toMatch(/\ntributary capture: snapshot of public\.orders: the capture stopped \(uncaptured\) before every row was read\n$/);
    expect(startedOver.code).toBe(1);
    const lines = jsonLines<Progress & { captureId: number }>(startedOver.stdout);
    expect(lines[0]).toMatchObject({ table: "public.items", stream: "public.items", filter: "id > 10" });
    expect(lines.slice(1).map((p) => p.state)).toEqual(["waiting", "superseded"]);
    expect(lines[1]).toMatchObject({ rowsDone: 0, filter: "id > 10", relayActive: false, percent: null });
    expect(startedOver.stderr).toMatch(/^tributary capture: backfill of public\.items \(where id > 10\): a backfill asked since started it over/);
  });

  it("add --wait --json follows the snapshot the relay reads (waiting, rows done of the estimate, done); status and list show it in progress; backfill --where --wait reads the matching rows again", async () => {
    db = await createTestDatabase(backend);
    const env = { DATABASE_URL: db.url };
    const ROWS = 600;
    const CHUNK = 100;
    await db.sql`create table items (id int primary key, label text)`;
    await db.sql`insert into items select g, 'item ' || g from generate_series(1, ${ROWS}) g`;
    await db.sql`analyze items`; // the estimate rows_estimated is the planner's

    const waiting = start(["capture", "add", "items", "--wait", "--json"], env);
    await eventually("add --wait to report the snapshot waiting", () => jsonLines<Progress>(waiting.output.stdout).some((p) => p.state === "waiting"));

    // Hold the relay once its first snapshot batch committed: the snapshot stays in progress until released.
    let held: () => void = () => {};
    let reachedHold: (rows: number) => void = () => {};
    const holding = new Promise<number>((resolve) => (reachedHold = resolve));
    const release = new Promise<void>((resolve) => (held = resolve));
    let heldOnce = false;
    relay = startRelay({
      databaseUrl: db.url, slotName: db.slotName, log: () => {}, snapshotChunkRows: CHUNK, snapshotPollMs: 100,
      hooks: {
        afterCommit: async (batch) => {
          const chunks = batch.captures.snapshots;
          if (heldOnce || chunks.length === 0 || chunks.some((c) => c.done)) return;
          heldOnce = true;
          reachedHold(chunks.reduce((n, c) => n + c.rows, 0));
          await release;
        },
      },
    });
    const rowsAtHold = await holding;
    expect(rowsAtHold).toBeGreaterThan(0);
    expect(rowsAtHold).toBeLessThan(ROWS);
    const percentAtHold = Math.floor((rowsAtHold * 100) / ROWS);
    await eventually("add --wait to report the rows read so far", () =>
      jsonLines<Progress>(waiting.output.stdout).some((p) => p.state === "snapshotting" && p.rowsDone === rowsAtHold));
    const [statusText, statusJson, list] = await Promise.all([run(["status"], env), run(["status", "--json"], env), run(["capture", "list"], env)]);
    held();
    for (const r of [statusText, statusJson, list]) expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(statusText.stdout).toMatch(new RegExp(`^public\\.items +public\\.items +snapshotting +rows read ${rowsAtHold}/~${ROWS} \\(${percentAtHold}%\\)$`, "m"));
    expect((JSON.parse(statusJson.stdout) as StatusJson).captures).toEqual([
      { table: "public.items", stream: "public.items", state: "snapshotting", rowsDone: rowsAtHold, rowsEstimated: ROWS, snapshotFilter: null, stopReason: null },
    ]);
    expect(list.stdout).toMatch(new RegExp(`^  public\\.items +public\\.items +snapshotting +${rowsAtHold}/~${ROWS} \\(${percentAtHold}%\\) `, "m"));

    const added = await waiting.exited;
    expect([added.code, added.stderr]).toEqual([0, ""]);
    const [result, ...progress] = jsonLines<Progress & { alreadyCaptured?: boolean }>(added.stdout);
    expect(result).toMatchObject({ table: "public.items", stream: "public.items", alreadyCaptured: false, snapshot: "initial", keyColumns: ["id"] });
    expect(progress[0]).toMatchObject({ state: "waiting", rowsDone: 0, rowsEstimated: ROWS, relayActive: false });
    expect(progress.at(-1)).toMatchObject({ state: "done", rowsDone: ROWS, rowsEstimated: ROWS, percent: 100 });
    for (const [i, p] of progress.entries()) {
      if (i > 0) expect(p.rowsDone).toBeGreaterThanOrEqual(progress[i - 1]!.rowsDone);
      if (p.state !== "done") expect(p.percent).toBe(Math.min(99, Math.floor((p.rowsDone * 100) / ROWS)));
    }
    const snapshot = await readAll(db.sql, "public.items");
    expect(snapshot).toHaveLength(ROWS);
    expect(new Set(snapshot.map((e) => e.key)).size).toBe(ROWS);
    expect(snapshot.every((e) => e.type === "row.read")).toBe(true);

    const backfill = await run(["capture", "backfill", "items", "--where", "id <= 50", "--wait"], env);
    expect(backfill.code, backfill.stderr).toBe(0);
    expect(backfill.stdout).toMatch(new RegExp(
      "^asked the relay to read public\\.items where id <= 50 into stream 'public\\.items' again\n" +
        "backfill of public\\.items \\(where id <= 50\\): done, 50 rows into stream 'public\\.items'( in \\d+\\.\\d s)?\n$"));
    const events = await readAll(db.sql, "public.items");
    expect(events).toHaveLength(ROWS + 50);
    const reads = new Map<string, number>();
    for (const e of events) reads.set(e.key, (reads.get(e.key) ?? 0) + 1);
    const readTwice = [...reads].filter(([, n]) => n === 2).map(([key]) => Number(key));
    expect(readTwice.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const [row] = await db.sql<{ state: string; rows_done: string; snapshot_filter: string }[]>`
      select state, rows_done::text, snapshot_filter from tributary.captures where "table" = 'public.items'`;
    expect(row).toEqual({ state: "streaming", rows_done: "50", snapshot_filter: "id <= 50" });
  });
});
