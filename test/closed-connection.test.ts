/**
 * A connection that dies under a pinned transaction or session
 * (docs/ARCHITECTURE.md, Known traps: postgres.js writes to a closed socket).
 *
 * postgres.js 3.4.9 throws an uncaught TypeError when a query goes to a
 * pinned connection after it closed (porsager/postgres#1208): sql.begin's
 * ROLLBACK after its backend was terminated, the next query on a reserved
 * connection. Everything here runs in the test worker, so such a write ends
 * the run. What must hold instead: the caller gets an error that says the
 * connection closed, nothing is sent on the dead connection, nothing of the
 * transaction is committed, and the pool (the relay) goes on.
 */
import postgres, { type Sql } from "postgres";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { append, connectPostgres, createStream, openSession, transaction, ConnectionClosedError, TributaryConnectionError } from "@tributary/client";
import { startRelay, type RelayHandle } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually, terminateRelayWriteInFlight } from "./support/processes.ts";
import { readAll, waitForCount } from "./support/streams.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Once per server: the decoder plays no part here. */
for (const backend of backends().filter((b) => b.decoder === "pgoutput")) {
  describe(`a connection that dies under a transaction or a session [${backend.name}]`, () => {
    let db: TestDatabase;
    let sql: Sql;
    let relay: RelayHandle | null = null;

    beforeEach(async () => {
      db = await createTestDatabase(backend);
      await db.sql`create table ledger (id int primary key)`;
      sql = connectPostgres(db.url, { max: 2, onnotice: () => {} });
    });
    afterEach(async () => {
      await relay?.stop();
      relay = null;
      await sql.end({ timeout: 1 });
      await db.drop();
    });

    /** Terminates `pid` once it runs a statement (not idle), so the kill lands mid-query. */
    async function terminateWhenBusy(pid: number): Promise<void> {
      await eventually(`backend ${pid} to run its query`, async () => {
        const [row] = await db.sql<{ state: string | null }[]>`select state from pg_stat_activity where pid = ${pid}`;
        return row?.state === "active";
      }, 10_000, 10);
      await db.sql`select pg_terminate_backend(${pid})`;
    }

    const ledger = async () => (await db.sql<{ id: number }[]>`select id from ledger order by id`).map((r) => r.id);

    it("a transaction whose backend is terminated mid-query rejects with CONNECTION_CLOSED, commits nothing, and the pool goes on", async () => {
      const failed = await transaction(sql, async (tx) => {
        await tx`insert into ledger values (1)`;
        const { pid } = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        void terminateWhenBusy(pid);
        await tx`select pg_sleep(30)`;
      }).then(() => null, (error: unknown) => error);
      expect((failed as { code?: string })?.code).toBe("CONNECTION_CLOSED");
      await sleep(100); // a ROLLBACK written to the dead socket would throw by now
      expect(await ledger()).toEqual([]);
      // The pool reconnects: the next transactions commit.
      await transaction(sql, async (tx) => void (await tx`insert into ledger values (2)`));
      await transaction(sql, async (tx) => void (await tx`insert into ledger values (3)`));
      expect(await ledger()).toEqual([2, 3]);
    });

    it("refuses the callback's next query, and sends no COMMIT, when the connection closed while the callback awaited something else", async () => {
      let refused: unknown = null;
      let callbackEnded: () => void = () => {};
      const callbackDone = new Promise<void>((r) => (callbackEnded = r));
      const failed = await transaction(sql, async (tx) => {
        await tx`insert into ledger values (1)`;
        const { pid } = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        await db.sql`select pg_terminate_backend(${pid})`;
        await sleep(300); // the handler's own work, while the connection closes
        try {
          await tx`insert into ledger values (2)`;
        } catch (error) {
          refused = error;
        }
        callbackEnded();
        return "handled"; // would COMMIT
      }).then(() => null, (error: unknown) => error);
      // The caller learns at once; the callback goes on with its own work meanwhile.
      expect((failed as { code?: string })?.code, String(failed)).toBe("CONNECTION_CLOSED");
      await callbackDone;
      expect(refused).toBeInstanceOf(ConnectionClosedError);
      // One family of errors: a connection error with the code postgres.js gives the same event.
      expect(refused).toBeInstanceOf(TributaryConnectionError);
      expect((refused as TributaryConnectionError).code).toBe("CONNECTION_CLOSED");
      expect((refused as Error).message).toMatch(/connection to PostgreSQL closed/);
      await sleep(100);
      expect(await ledger()).toEqual([]);
      await transaction(sql, async (tx) => void (await tx`insert into ledger values (3)`));
      expect(await ledger()).toEqual([3]);
    });

    it("sends no ROLLBACK TO SAVEPOINT when a savepoint's backend is terminated", async () => {
      const failed = await transaction(sql, async (tx) => {
        const { pid } = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        await tx.savepoint(async (sp) => {
          await sp`insert into ledger values (1)`;
          void terminateWhenBusy(pid);
          await sp`select pg_sleep(30)`;
        });
      }).then(() => null, (error: unknown) => error);
      expect((failed as { code?: string })?.code).toBe("CONNECTION_CLOSED");
      await sleep(100);
      expect(await ledger()).toEqual([]);
    });

    it("still rolls back a failed transaction on a live connection, which returns to the pool idle", async () => {
      const failed = await transaction(sql, async (tx) => {
        await tx`insert into ledger values (1)`;
        await tx`insert into ledger values (1)`; // duplicate key
      }).then(() => null, (error: unknown) => error);
      expect((failed as { code?: string })?.code).toBe("23505");
      expect(await ledger()).toEqual([]);
      const [row] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'`;
      expect(row!.n, "a connection left inside the failed transaction").toBe(0);
    });

    it("a session whose backend is terminated reports it, refuses its next query, and has lost its lock", async () => {
      const session = openSession(sql);
      try {
        const { pid } = (await session.sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        await session.sql`select pg_advisory_lock(42)`;
        await db.sql`select pg_terminate_backend(${pid})`;
        const closed = await session.closed;
        expect(closed).toBeInstanceOf(ConnectionClosedError);
        // Not run on a new connection, which would not hold the lock.
        await expect(Promise.resolve().then(() => session.sql`select 1`)).rejects.toBeInstanceOf(ConnectionClosedError);
        const [lock] = await sql<{ got: boolean }[]>`select pg_try_advisory_lock(42) as got`;
        expect(lock!.got).toBe(true);
      } finally {
        await session.end({ timeout: 1 });
      }
    });

    it("a relay whose writer backend is terminated mid-batch survives, reconnects and streams every event once", async () => {
      await createStream(db.sql, "orders", 2);
      const log: string[] = [];
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, standbyPollMs: 100, log: (m) => log.push(m) });
      let relayFailed: unknown = null;
      relay.done.catch((error: unknown) => (relayFailed = error));
      await append(db.sql, { stream: "orders", key: "k", type: "t", data: { n: 0 } });
      await waitForCount(db.sql, 1, 30_000);
      // Hold the checkpoint row: the next batch's compare-and-set waits on it,
      // so the writer is inside its transaction when it is terminated.
      const admin = postgres(db.url, { max: 1, onnotice: () => {} });
      let release: () => void = () => {};
      const held = new Promise<void>((r) => (release = r));
      let holdingPid: (pid: number) => void = () => {};
      const holder = new Promise<number>((r) => (holdingPid = r));
      const holding = admin.begin(async (tx) => {
        const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid from tributary.relay_checkpoints for update`;
        holdingPid(row!.pid);
        await held;
      });
      try {
        const holderPid = await holder;
        await append(db.sql, { stream: "orders", key: "k", type: "t", data: { n: 1 } });
        await terminateRelayWriteInFlight(db.sql, 30_000, holderPid);
      } finally {
        release();
        await holding;
        await admin.end();
      }
      await append(db.sql, { stream: "orders", key: "k", type: "t", data: { n: 2 } });
      await waitForCount(db.sql, 3, 30_000);
      await sleep(300);
      const events = await readAll(db.sql, "orders");
      expect(events.map((e) => (e.data as { n: number }).n)).toEqual([0, 1, 2]);
      expect(relayFailed).toBeNull();
      expect(log.some((m) => /reconnecting/.test(m)), log.join("\n")).toBe(true);
    });

    it("a relay whose lock session's backend is terminated gives up the lead at once and leads again", async () => {
      await createStream(db.sql, "orders", 2);
      const log: string[] = [];
      let activations = 0;
      relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, standbyPollMs: 100, log: (m) => log.push(m), onActive: () => activations++ });
      await append(db.sql, { stream: "orders", key: "k", type: "t", data: { n: 0 } });
      await waitForCount(db.sql, 1, 30_000);
      const [lease] = await db.sql<{ lock_pid: number }[]>`select lock_pid from tributary.relay_leases where slot_name = ${db.slotName}`;
      await db.sql`select pg_terminate_backend(${lease!.lock_pid})`;
      // Well before the next renewal (every 5 s) would have found out.
      await eventually("the relay to lead again", () => activations >= 2, 4_000);
      expect(log.some((m) => /lost its lock connection/.test(m)), log.join("\n")).toBe(true);
      await append(db.sql, { stream: "orders", key: "k", type: "t", data: { n: 1 } });
      await waitForCount(db.sql, 2, 30_000);
      expect((await readAll(db.sql, "orders")).map((e) => (e.data as { n: number }).n)).toEqual([0, 1]);
    });
  });
}
