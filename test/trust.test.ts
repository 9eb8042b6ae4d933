/**
 * Nothing halts the pipeline, nothing forges an event (docs/ARCHITECTURE.md
 * invariants 7, 12, 13): write errors surface and the refused event is set
 * aside; poison and forged messages are set aside; limits hold for every
 * session; a re-created slot or a second slot is refused; set-up errors no
 * retry can heal stop the relay with what to do.
 */
import { createHmac, randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { append, TributaryInputError } from "@tributary/client";
import { migrate } from "@tributary/migrate";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { readStatus } from "../apps/cli/src/internal/status-query.ts";
import { backends, createTestDatabase, describeBackends, type TestDatabase } from "./support/backends.ts";
import { eventually, RelayChildren } from "./support/processes.ts";
import { assertDense, readAll, waitForCount } from "./support/streams.ts";

const quiet = () => {};

interface Rejected {
  reason: string;
  detail: string;
  stream: string | null;
  raw: Buffer;
}

const rejectedMessages = (db: TestDatabase) =>
  db.sql<Rejected[]>`select reason, detail, stream, raw from tributary.rejected_messages order by id`;

describeBackends("the pipeline does not halt", (backend) => {
  let db: TestDatabase | undefined;
  let relay: RelayHandle | undefined;
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await db?.drop();
    db = undefined;
  });

  it("sets aside poison messages (not signed, not JSON) with LSN, reason and bytes, alarms in status, and goes on", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    await sql`select tributary.append('orders', 'a', 'T', '{"n":1}')`;
    await sql`select pg_logical_emit_message(true, 'tributary', 'garbage')`;
    await sql`select pg_logical_emit_message(true, 'tributary', ${'["orders","a",8,"x","T"]\n{}\n{not json'})`;
    await sql`select pg_logical_emit_message(true, 'tributary', ${Buffer.from([0, 0xff, 0x0a, 0x01])})`;
    await sql`select pg_logical_emit_message(true, 'a', '')`; // not ours, and shorter than our prefix
    await sql`select tributary.append('orders', 'a', 'T', '{"n":2}')`;
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    await waitForCount(sql, 2);
    await eventually("the three poison messages set aside", async () => (await rejectedMessages(db!)).length === 3);
    const events = await readAll(sql, "orders");
    expect(events.map((e) => e.data)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(events.map((e) => e.offset)).toEqual([0, 1]);
    const rejected = await rejectedMessages(db);
    expect(rejected.map((r) => r.reason)).toEqual(["unsigned", "unsigned", "unsigned"]);
    expect(rejected[0]!.raw.toString()).toBe("garbage");
    // pgoutput sends the bytes as they were emitted; wal2json sends them as JSON text.
    if (backend.decoder === "pgoutput") expect(rejected[2]!.raw).toEqual(Buffer.from([0, 0xff, 0x0a, 0x01]));
    const [lsns] = await sql<{ ok: boolean }[]>`select bool_and(lsn > '0/0' and commit_lsn >= lsn) as ok from tributary.rejected_messages`;
    expect(lsns!.ok).toBe(true);
    const status = await readStatus(sql);
    expect(status.alarms.join("\n")).toMatch(/3 committed message\(s\) set aside as unsigned \(tributary\.rejected_messages\)/);
    // The checkpoint moved past them: a restarted relay does not set them aside again.
    await relay.stop();
    await sql`select tributary.append('orders', 'a', 'T', '{"n":3}')`;
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    await waitForCount(sql, 3);
    expect(await rejectedMessages(db)).toHaveLength(3);
  });

  it("surfaces a batch the stream table refuses, sets aside exactly the refused event and writes the rest, dense", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    // What an operator's trigger or constraint might do: refuse some rows.
    await sql`alter table tributary.events add constraint no_poison check (type <> 'Poison')`;
    await sql.begin(async (tx) => {
      for (let i = 0; i < 5; i++) await tx`select tributary.append('orders', ${`k${i % 2}`}, ${i === 2 ? "Poison" : "T"}, ${JSON.stringify({ i })}::text::jsonb)`;
    });
    await sql`select tributary.append('orders', 'k0', 'T', '{"i":5}')`;
    const logs: string[] = [];
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: (m) => logs.push(m) });
    await waitForCount(sql, 5, 60_000);
    const events = await readAll(sql, "orders");
    expect(events.map((e) => (e.data as { i: number }).i).sort()).toEqual([0, 1, 3, 4, 5]);
    assertDense(events);
    const rejected = await rejectedMessages(db);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toBe("write_failed");
    expect(rejected[0]!.detail).toMatch(/no_poison.*SQLSTATE 23514/);
    expect(rejected[0]!.stream).toBe("orders");
    expect(logs.join("\n")).toMatch(/refused/);
  });

  it("sets aside the refused event of a batch of several streams, whether its stream's COPY comes first or last", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    await sql`alter table tributary.events add constraint no_poison check (type <> 'Poison')`;
    // One transaction, three streams: the batch copies orders, payments, refunds in that order,
    // and the refusal comes from the last COPY, with the partitions' offsets sent behind it.
    const appendAll = (events: Array<[stream: string, type: string, i: number]>) =>
      sql.begin(async (tx) => {
        for (const [stream, type, i] of events) await tx`select tributary.append(${stream}, ${`k${i % 3}`}, ${type}, ${JSON.stringify({ i })}::text::jsonb)`;
      });
    await appendAll([["orders", "T", 0], ["orders", "T", 1], ["payments", "T", 2], ["refunds", "T", 3], ["refunds", "Poison", 4], ["refunds", "T", 5]]);
    const logs: string[] = [];
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: (m) => logs.push(m) });
    await waitForCount(sql, 5, 60_000);
    // Then the refusal from the first COPY of a batch, the relay running.
    await appendAll([["orders", "Poison", 6], ["orders", "T", 7], ["payments", "T", 8], ["refunds", "T", 9]]);
    await waitForCount(sql, 8, 60_000);
    const events = await readAll(sql);
    expect(events.map((e) => (e.data as { i: number }).i).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 5, 7, 8, 9]);
    assertDense(events);
    const rejected = await rejectedMessages(db);
    expect(rejected.map((r) => [r.reason, r.stream])).toEqual([["write_failed", "refunds"], ["write_failed", "orders"]]);
    for (const r of rejected) expect(r.detail).toMatch(/no_poison.*SQLSTATE 23514/);
  });

  it("sets aside a signed event whose id is no uuid (the stream table refuses its binary row) and writes the others, dense", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    await sql`select tributary.append('orders', 'k0', 'T', '{"i":0}')`;
    const [key] = await sql<{ id: number; secret: Buffer; partitions: number }[]>`
      select k.id, k.secret, tributary.stream_partitions('orders') as partitions from tributary.signing_keys k order by k.id desc limit 1`;
    // Only a holder of the cluster's signing key can do this: the append functions always send a uuid.
    const payload = `["orders","k1",${key!.partitions},"not-a-uuid","T"]\n{}\n{"i":1}`;
    const signature = createHmac("sha256", key!.secret).update(payload).digest("hex");
    await sql.begin(async (tx) => {
      await tx`select pg_logical_emit_message(true, 'tributary', ${`tributary-v1 ${key!.id} ${signature}\n${payload}`})`;
      await tx`select tributary.append('orders', 'k2', 'T', '{"i":2}')`;
    });
    await sql`select tributary.append('orders', 'k3', 'T', '{"i":3}')`;
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    await waitForCount(sql, 3, 60_000);
    const events = await readAll(sql, "orders");
    expect(events.map((e) => (e.data as { i: number }).i).sort()).toEqual([0, 2, 3]);
    assertDense(events);
    const rejected = await rejectedMessages(db);
    expect(rejected.map((r) => r.reason)).toEqual(["write_failed"]);
    expect(rejected[0]!.detail).toMatch(/SQLSTATE 22P03/);
    expect(rejected[0]!.stream).toBe("orders");
  });

  it("refuses at append time what the stream table could not hold: a 6,400-character key, 1 MB type, 30 MB headers, 5,000-deep data", async () => {
    db = await createTestDatabase(backend);
    const refusal = async (work: Promise<unknown>) => work.then(() => null, (e: unknown) => e as TributaryInputError);
    const event = { stream: "s", key: "k", type: "T", data: 1 };
    expect((await refusal(append(db.sql, { ...event, key: "k".repeat(6400) })))?.code).toBe("KEY_TOO_LARGE");
    expect((await refusal(append(db.sql, { ...event, type: "t".repeat(1 << 20) })))?.code).toBe("TYPE_TOO_LARGE");
    expect((await refusal(append(db.sql, { ...event, headers: { h: "x".repeat(30 << 20) } })))?.code).toBe("HEADERS_TOO_LARGE");
    const deep = (levels: number) => `${"[".repeat(levels)}1${"]".repeat(levels)}`;
    const deepError = await refusal(db.sql`select tributary.append('s', 'k', 'T', ${deep(5000)}::text::jsonb)`) as { constraint_name?: string; message?: string } | null;
    expect(deepError?.constraint_name).toBe("tributary_data_depth");
    expect(deepError?.message).toMatch(/nests arrays or objects more than 100 deep/);
    const deepHeaders = await refusal(db.sql`select tributary.append('s', 'k', 'T', '1', ${`{"h": ${deep(101)}}`}::text::jsonb)`) as { constraint_name?: string } | null;
    expect(deepHeaders?.constraint_name).toBe("tributary_headers_depth");
    // At the limits: a 2048-byte key and 100 levels are accepted, and the relay writes them.
    await append(db.sql, { ...event, key: "k".repeat(2048) });
    await db.sql`select tributary.append('s', 'k', 'T', ${deep(100)}::text::jsonb)`;
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    await waitForCount(db.sql, 2);
    expect(await rejectedMessages(db)).toHaveLength(0);
  });

  it("refuses a slot re-created by hand: the events committed in between are a gap, as with a lost slot", async () => {
    db = await createTestDatabase(backend);
    const sql = db.sql;
    await sql`select tributary.append('orders', 'a', 'T', '1')`;
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    await waitForCount(sql, 1);
    await relay.stop();
    relay = undefined;
    await sql`select pg_drop_replication_slot(${db.slotName})`;
    for (let i = 0; i < 5; i++) await sql`select tributary.append('orders', 'a', 'T', '2')`;
    await sql`select pg_create_logical_replication_slot(${db.slotName}, ${db.decoder})`;
    for (let i = 0; i < 5; i++) await sql`select tributary.append('orders', 'a', 'T', '3')`;
    const handle = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
    const error = await handle.done.then(() => null, (e: unknown) => e as { code?: string; message?: string });
    expect(error?.code).toBe("SLOT_GAP");
    expect(error?.message).toMatch(/re-created.*missing from the stream.*UPDATE tributary\.relay_checkpoints/);
    expect(await readAll(sql, "orders")).toHaveLength(1);
  });
});

describe("nothing forges an event", () => {
  const backend = backends()[0]!;
  let db: TestDatabase;
  let relay: RelayHandle;
  let stranger: postgres.Sql;
  const role = `stranger_${randomBytes(4).toString("hex")}`;
  beforeAll(async () => {
    db = await createTestDatabase(backend);
    await db.sql.unsafe(`create role ${role} login`);
    stranger = postgres(db.url.replace(/\/\/[^@/]*@/, `//${role}@`), { max: 1, onnotice: quiet });
    relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: quiet });
  });
  afterAll(async () => {
    await relay?.stop();
    await stranger?.end();
    await db?.drop();
    await db?.sql.unsafe(`drop role if exists ${role}`).catch(() => undefined);
    const admin = postgres(backend.serverUrl, { max: 1, onnotice: quiet });
    await admin.unsafe(`drop role if exists ${role}`);
    await admin.end();
  });

  it("a role with no grants emits a well-formed message with the prefix: no event, and it is set aside as unsigned", async () => {
    const forgery = '["payments","acct-1",8,"00000000-0000-0000-0000-000000000001","PaymentCaptured"]\n{}\n{"amount":1000000}';
    await stranger`select pg_logical_emit_message(true, 'tributary', ${forgery})`;
    await stranger`select pg_logical_emit_message(true, 'tributary', ${`tributary-v1 1 ${"ab".repeat(32)}\n${forgery}`})`;
    await db.sql`select tributary.append('orders', 'a', 'T', '1')`;
    await waitForCount(db.sql, 1);
    await eventually("both forgeries set aside", async () => (await rejectedMessages(db)).length === 2);
    expect(await readAll(db.sql, "payments")).toHaveLength(0);
    const [stream] = await db.sql`select 1 from tributary.streams where name = 'payments'`;
    expect(stream).toBeUndefined();
    expect((await rejectedMessages(db)).map((r) => r.reason)).toEqual(["unsigned", "bad_signature"]);
  });

  it("the signing key is not readable by other roles", async () => {
    const error = await stranger`select secret from tributary.signing_keys`.then(() => null, (e: unknown) => e as { code?: string });
    expect(error?.code).toBe("42501");
  });

  it("a session cannot lift the limits: SET tributary.max_data_bytes changes nothing", async () => {
    const error = await db.sql.begin(async (tx) => {
      await tx`set local tributary.max_data_bytes = 1073741823`;
      return tx`select tributary.append('big', 'k', 'T', ${JSON.stringify("x".repeat(5 << 20))}::text::jsonb)`;
    }).then(() => null, (e: unknown) => e as { constraint_name?: string; message?: string });
    expect(error?.constraint_name).toBe("tributary_data_size");
    expect(error?.message).toMatch(/over the limit of 1048576 bytes/);
  });
});

describeBackends("one slot feeds a database's streams", (backend) => {
  let db: TestDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it("migrate refuses a second slot and says that a standby shares the slot", async () => {
    db = await createTestDatabase(backend);
    const second = `${db.slotName}_2`;
    const error = await migrate(db.sql, { slotName: second, decoder: backend.decoder }).then(() => null, (e: unknown) => e as { code?: string; message?: string });
    expect(error?.code).toBe("SECOND_SLOT");
    expect(error?.message).toMatch(new RegExp(`already fed by replication slot '${db.slotName}'.*For a standby relay, start another relay with slotName: "${db.slotName}"`));
    const [slot] = await db.sql`select 1 from pg_replication_slots where slot_name = ${second}`;
    expect(slot).toBeUndefined();
  });
});

describe("set-up errors no retry can heal stop the relay with what to do", () => {
  const backend = backends()[0]!;
  let db: TestDatabase;
  const suffix = randomBytes(4).toString("hex");
  const roles = { noPrivileges: `nopriv_${suffix}`, noReplication: `norepl_${suffix}`, hurried: `hurried_${suffix}` };
  const urlAs = (role: string, database?: string) => {
    const url = new URL(db.url);
    url.username = role;
    if (database) url.pathname = `/${database}`;
    return url.toString();
  };
  beforeAll(async () => {
    db = await createTestDatabase(backend);
    await db.sql.unsafe(`create role ${roles.noPrivileges} login`);
    await db.sql.unsafe(`create role ${roles.noReplication} login`);
    await db.sql.unsafe(`grant usage on schema tributary to ${roles.noReplication}`);
    await db.sql.unsafe(`grant select, insert, update on all tables in schema tributary to ${roles.noReplication}`);
    await db.sql.unsafe(`create role ${roles.hurried} login superuser`);
    await db.sql.unsafe(`alter role ${roles.hurried} set statement_timeout = '3ms'`);
  });
  afterAll(async () => {
    await db?.drop();
    const admin = postgres(backend.serverUrl, { max: 1, onnotice: quiet });
    for (const role of Object.values(roles)) await admin.unsafe(`drop owned by ${role} cascade`).catch(() => undefined);
    for (const role of Object.values(roles)) await admin.unsafe(`drop role if exists ${role}`);
    await admin.end();
  });

  const fatal = async (databaseUrl: string) => {
    const logs: string[] = [];
    const handle = startRelay({ databaseUrl, slotName: db.slotName, log: (m) => logs.push(m) });
    const error = await handle.done.then(() => null, (e: unknown) => e as { code?: string; message?: string });
    return { error, logs };
  };

  it("a database that does not exist", async () => {
    const { error, logs } = await fatal(urlAs(new URL(db.url).username, `${db.slotName}_missing`));
    expect(error?.code).toBe("NO_DATABASE");
    expect(error?.message).toMatch(/does not exist.*check the database name/);
    expect(logs.join("\n")).not.toMatch(/reconnecting/);
  });

  it("a role without privileges on the tributary schema", async () => {
    const { error } = await fatal(urlAs(roles.noPrivileges));
    expect(error?.code).toBe("PERMISSION");
    expect(error?.message).toMatch(/permission denied.*GRANT tributary_relay TO/);
  });

  it("a role without REPLICATION", async () => {
    const { error } = await fatal(urlAs(roles.noReplication));
    expect(error?.code).toBe("NO_REPLICATION");
    expect(error?.message).toMatch(/REPLICATION attribute/);
  });

  it("a 3 ms statement_timeout on the relay's role does not stop it", async () => {
    await db.sql`select tributary.append('orders', 'a', 'T', '1')`;
    const handle = startRelay({ databaseUrl: urlAs(roles.hurried), slotName: db.slotName, log: quiet });
    try {
      await waitForCount(db.sql, 1);
      await db.sql`select tributary.append('orders', 'a', 'T', '2')`;
      await waitForCount(db.sql, 2);
    } finally {
      await handle.stop();
    }
  });
});

describe("a frozen or hung relay loses its role to a standby within the takeover time", () => {
  const backend = backends()[0]!;
  const takeoverAfterMs = 3_000;
  // The standby polls every 200 ms; the active relay renews every third of the
  // takeover time: a takeover is due within takeoverAfterMs + one renewal + one poll.
  const takeoverBound = takeoverAfterMs + takeoverAfterMs / 3 + 200;
  let children: RelayChildren;
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    children = await RelayChildren.build();
  });
  afterEach(async () => {
    await children.killAll();
    await db?.drop();
    db = undefined;
  });
  afterAll(async () => {
    await children?.dispose();
  });

  const appendN = async (sql: postgres.Sql, from: number, n: number) => {
    for (let i = from; i < from + n; i++) await sql`select tributary.append('orders', ${`k${i % 3}`}, 'T', ${JSON.stringify({ i })}::text::jsonb)`;
  };

  it("SIGSTOP: the standby takes over, the frozen relay is fenced when it wakes, every event once", async () => {
    db = await createTestDatabase(backend);
    const active = children.start({ databaseUrl: db.url, slotName: db.slotName, takeoverAfterMs });
    await active.waitActive();
    const standby = children.start({ databaseUrl: db.url, slotName: db.slotName, takeoverAfterMs });
    await appendN(db.sql, 0, 10);
    await waitForCount(db.sql, 10);
    active.process.kill("SIGSTOP");
    const frozenAt = Date.now();
    await appendN(db.sql, 10, 10);
    await standby.waitActive(1, takeoverBound + 15_000);
    await waitForCount(db.sql, 20);
    const tookMs = Date.now() - frozenAt;
    expect(tookMs, standby.log()).toBeGreaterThanOrEqual(takeoverAfterMs - takeoverAfterMs / 3);
    expect(standby.log()).toMatch(/made no progress for .* terminated its \d+ backends; taking over/);
    active.process.kill("SIGCONT");
    await appendN(db.sql, 20, 10);
    await waitForCount(db.sql, 30);
    // The woken relay finds its connections gone and waits as a standby; it writes nothing.
    await eventually("the woken relay to notice", () => /reconnecting|standby/.test(active.log()), 30_000);
    await appendN(db.sql, 30, 5);
    await waitForCount(db.sql, 35);
    const events = await readAll(db.sql, "orders");
    expect(events.map((e) => (e.data as { i: number }).i).sort((a, b) => a - b)).toEqual([...Array(35).keys()]);
    assertDense(events);
  });

  it("a write hung on a lock: the active relay stops renewing, the standby takes over and writes once the lock is gone", async () => {
    db = await createTestDatabase(backend);
    const active = children.start({ databaseUrl: db.url, slotName: db.slotName, takeoverAfterMs });
    await active.waitActive();
    const standby = children.start({ databaseUrl: db.url, slotName: db.slotName, takeoverAfterMs });
    const blocker = await db.sql.reserve();
    try {
      await blocker`begin`;
      // EXCLUSIVE: writes wait, reads (the standby loading its state) do not.
      await blocker`lock table tributary.partition_offsets in exclusive mode`;
      await appendN(db.sql, 0, 5);
      // Half the takeover time of a stuck write, then the lease runs out.
      await standby.waitActive(1, takeoverBound + takeoverAfterMs / 2 + 15_000);
      expect(active.log()).toMatch(/a batch write has run for .* not renewing the lease/);
    } finally {
      await blocker`rollback`;
      blocker.release();
    }
    await waitForCount(db.sql, 5);
    await appendN(db.sql, 5, 5);
    await waitForCount(db.sql, 10);
    const events = await readAll(db.sql, "orders");
    expect(events).toHaveLength(10);
    assertDense(events);
  });
});
