/**
 * Queue workers (work()): wake-ups by notification (also one that comes
 * while a claim is on the wire, and what was sent while the worker's LISTEN
 * connection was down), concurrency, retries to the dead letters,
 * extend() for long handlers, a clean stop that releases what it cannot
 * finish, and 16 workers in their own processes, some killed (-9)
 * mid-handler: every message completes at least once, none lost.
 */
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { appendBatch, createQueue, createStream, send, work, type QueueWorker } from "@tributary/client";
import { startRelay } from "@tributary/relay";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { Fixture, type FixtureChild } from "./support/consumer-processes.ts";
import { eventually } from "./support/processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP hop to the test server: each client connection is handed to
 * `onClient` with a way to open its upstream connection (the client's bytes
 * up to then are passed on when it opens). Returns the hop's URL and close().
 */
async function tcpHop(databaseUrl: string, onClient: (client: Socket, open: () => Socket | null) => void) {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    const early: Buffer[] = [];
    let upstream: Socket | null = null;
    client.on("data", (chunk) => (upstream ? upstream.write(chunk) : early.push(chunk)));
    client.on("error", () => upstream?.destroy());
    client.on("close", () => upstream?.destroy());
    onClient(client, () => {
      if (client.destroyed) return null;
      const socket = connect(Number(target.port), target.hostname);
      upstream = socket;
      sockets.add(socket);
      for (const chunk of early.splice(0)) socket.write(chunk);
      socket.on("error", () => client.destroy());
      socket.on("close", () => client.destroy());
      return socket;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A hop that holds back the server's answer to the first claim executed
 * through it until release(): the window between a claim reading the queue
 * and its answer reaching the worker, held open on purpose. (postgres.js
 * prepares a statement first — Parse, answered at once — then executes it
 * with a Bind naming it: the Bind's answer is held.)
 */
async function claimAnswerGate(databaseUrl: string) {
  let claimAnswered = false;
  let claimStatement: string | null = null;
  let armed = true;
  const releases: Array<() => void> = [];
  const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5]); // 'Z', length 5: the end of a statement's answer
  const hop = await tcpHop(databaseUrl, (client, open) => {
    const upstream = open()!;
    let held: Buffer[] | null = null;
    client.on("data", (chunk) => {
      const text = chunk.toString("latin1");
      // Parse: 'P', length, statement name, NUL, query text. Bind: 'B', length, portal, NUL, statement name, NUL.
      claimStatement ??= /P[^]{4}([^\x00]*)\x00[^\x00]*tributary\.claim\(/.exec(text)?.[1] ?? null;
      if (armed && claimStatement !== null && new RegExp(`B[^]{4}\\x00${claimStatement}\\x00`).test(text)) {
        armed = false;
        held = [];
        releases.push(() => {
          for (const b of held!) client.write(b);
          held = null;
        });
      }
    });
    upstream.on("data", (chunk) => {
      if (held === null) return void client.write(chunk);
      held.push(chunk);
      if (Buffer.concat(held).includes(readyForQuery)) claimAnswered = true;
    });
  });
  return {
    url: hop.url,
    /** The claim ran on the server and its whole answer is held here. */
    claimAnswered: () => claimAnswered,
    release: () => {
      for (const r of releases.splice(0)) r();
    },
    close: hop.close,
  };
}

/**
 * A hop that can cut the connection a client LISTENs on for queue
 * notifications, and hold the client's next connections (accepted, their
 * bytes kept, not yet passed on) until release(): a window in which the
 * client listens to nothing, held open on purpose.
 */
async function listenerGate(databaseUrl: string) {
  let holding = false;
  const held: Array<() => void> = [];
  const listening = new Set<Socket>();
  const hop = await tcpHop(databaseUrl, (client, open) => {
    client.on("data", (chunk) => {
      if (chunk.toString("latin1").includes('listen "tributary_queue"')) listening.add(client);
    });
    client.on("close", () => listening.delete(client));
    const pass = () => open()?.on("data", (chunk) => client.write(chunk));
    if (holding) held.push(pass);
    else pass();
  });
  return {
    url: hop.url,
    /** A connection through the gate has sent LISTEN. */
    listening: () => listening.size > 0,
    /** Closes the LISTEN connections and holds every new connection from now on. */
    cutListener: () => {
      holding = true;
      for (const socket of listening) socket.destroy();
    },
    /** Connections waiting at the gate. */
    held: () => held.length,
    release: () => {
      holding = false;
      for (const pass of held.splice(0)) pass();
    },
    close: hop.close,
  };
}

/** Until the worker connected as `applicationName` has its claim answered and waits (idle after a claim). */
async function untilClaimAnswered(db: TestDatabase, applicationName: string, what: string): Promise<void> {
  await eventually(what, async () => (await db.sql`
    select 1 from pg_stat_activity
     where datname = current_database() and application_name = ${applicationName} and state = 'idle' and query like '%tributary.claim(%'`).length > 0);
}

const backend = backends().find((b) => b.decoder === "pgoutput")!;

describe(`queue workers [${backend.name}]`, () => {
  let db: TestDatabase;
  const workers: QueueWorker[] = [];
  let fixture: Fixture;

  beforeAll(async () => {
    fixture = await Fixture.build(new URL("./support/worker-child.ts", import.meta.url), "working");
  });
  afterAll(async () => {
    await fixture?.dispose();
  });
  afterEach(async () => {
    await Promise.allSettled(workers.splice(0).map((w) => w.stop()));
    await db?.drop();
  });

  it("an idle worker picks up a new message on its NOTIFY, long before its poll; at most `concurrency` at once; each acked on its first delivery", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    const [queue] = await db.sql<{ visibility_ms: number }[]>`
      select extract(epoch from visibility_timeout)::float8 * 1000 as visibility_ms from tributary.queue_settings('jobs')`;
    const pollIntervalMs = 60_000;
    let running = 0;
    let peak = 0;
    const done: number[] = [];
    // A client of its own, named, so the test can see the worker's first claim finish on the server.
    const workerSql = postgres(db.url, { max: 3, onnotice: () => {}, connection: { application_name: "idle-worker" } });
    try {
      const worker = await work<{ n: number }>(workerSql, "jobs", async (m) => {
        running++;
        peak = Math.max(peak, running);
        await sleep(30);
        running--;
        done.push(m.payload.n);
      }, { concurrency: 3, pollIntervalMs, vacuum: false, log: () => {} });
      try {
        // Idle: its first claim found the queue empty (on the server; a NOTIFY that beats that
        // claim's answer to the worker is kept for another claim), so only a NOTIFY or the poll wakes it.
        await untilClaimAnswered(db, "idle-worker", "the worker's first claim answered");
        await send(db.sql, "jobs", { n: 0 });
        // Its poll comes pollIntervalMs after that claim: handled within half of that is the NOTIFY's doing.
        await eventually("the first message handled on its NOTIFY", () => done.length === 1, pollIntervalMs / 2, 5);
        await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, 20) g`;
        // Handled is not acked: the worker acks after the handler returns. A lost ack would keep its
        // message in the queue until its claim expired: drained within the visibility timeout means
        // every ack landed, and each message handled once means none was delivered twice.
        await eventually("all 21 handled and acked", async () => done.length >= 21 && (await db.sql`select 1 from tributary.queue_messages limit 1`).length === 0, queue!.visibility_ms);
        expect([...done].sort((a, b) => a - b)).toEqual(Array.from({ length: 21 }, (_, i) => i));
        expect(peak).toBe(3);
      } finally {
        await worker.stop();
      }
    } finally {
      await workerSql.end();
    }
  });

  it("a NOTIFY that arrives while the worker's claim is on the wire is not lost: the worker claims again instead of sleeping until its poll", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    const pollIntervalMs = 60_000;
    const gate = await claimAnswerGate(db.url);
    const workerSql = postgres(gate.url, { max: 1, onnotice: () => {} });
    const handled: number[] = [];
    try {
      const worker = await work<{ n: number }>(workerSql, "jobs", (m) => void handled.push(m.payload.n), { pollIntervalMs, vacuum: false, log: () => {} });
      try {
        // The worker's first claim read the queue (empty); its answer is held.
        await eventually("the worker's first claim answered at the gate", gate.claimAnswered);
        let notified!: () => void;
        const seen = new Promise<void>((resolve) => (notified = resolve));
        // Listeners run in the order they were added: when this one runs, the worker's has.
        const listening = await workerSql.listen("tributary_queue", () => notified());
        await send(db.sql, "jobs", { n: 1 }); // committed after that claim read the queue
        await seen;
        gate.release(); // the claim's empty answer reaches the worker after the NOTIFY did
        await eventually("the message handled before the worker's poll", () => handled.length === 1, pollIntervalMs / 2);
        await listening.unlisten();
      } finally {
        await worker.stop();
      }
    } finally {
      await workerSql.end();
      await gate.close();
    }
  });

  it("a worker whose LISTEN connection dropped claims again once it listens anew: what was sent meanwhile is handled long before its poll", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    const pollIntervalMs = 60_000;
    const gate = await listenerGate(db.url);
    const workerSql = postgres(gate.url, { max: 1, onnotice: () => {}, connection: { application_name: "relisten-worker" } });
    const handled: number[] = [];
    try {
      const worker = await work<{ n: number }>(workerSql, "jobs", (m) => void handled.push(m.payload.n), { pollIntervalMs, vacuum: false, log: () => {} });
      try {
        await eventually("the worker to listen", gate.listening);
        await untilClaimAnswered(db, "relisten-worker", "the worker's claims answered: it waits for a wake-up");
        gate.cutListener();
        await eventually("postgres.js to connect again to listen (held at the gate)", () => gate.held() > 0);
        // Its LISTEN is not on the server now: this message notifies no one.
        await send(db.sql, "jobs", { n: 1 });
        gate.release();
        await eventually("the message handled before the worker's poll", () => handled.length === 1, pollIntervalMs / 2);
        expect(handled).toEqual([1]);
      } finally {
        await worker.stop();
      }
    } finally {
      await workerSql.end();
      await gate.close();
    }
  });

  it("a failing handler is retried with backoff, then its message goes to the dead letters with the error", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { maxDeliveries: 3, backoff: { base: 0.05, jitter: 0 } });
    let calls = 0;
    workers.push(await work(db.sql, "jobs", () => {
      calls++;
      throw new Error("payment provider down");
    }, { pollIntervalMs: 50, log: () => {} }));
    await send(db.sql, "jobs", { n: 1 });
    await eventually("the dead letter", async () => (await db.sql`select 1 from tributary.queue_dead_letters`).length === 1, 10_000);
    expect(calls).toBe(3);
    const [dead] = await db.sql`select last_error from tributary.queue_dead_letters`;
    expect(dead?.last_error).toBe("Error: payment provider down");
  });

  it("a handler longer than the visibility timeout keeps its claim (extend), so no one else gets the message", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { visibilityTimeout: 0.4 });
    const seenBy: string[] = [];
    const handler = async (_m: unknown, { worker }: { worker: string }) => {
      seenBy.push(worker);
      await sleep(1_500);
    };
    workers.push(await work(db.sql, "jobs", handler, { worker: "a", pollIntervalMs: 50, log: () => {} }));
    workers.push(await work(db.sql, "jobs", handler, { worker: "b", pollIntervalMs: 50, log: () => {} }));
    await send(db.sql, "jobs", { n: 1 });
    await eventually("handled and acked", async () => (await db.sql`select 1 from tributary.queue_messages`).length === 0, 10_000);
    expect(seenBy).toHaveLength(1);
  });

  it("stop() lets short handlers finish and releases a long one at once for another worker", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { visibilityTimeout: 60 });
    const finished: number[] = [];
    const first = await work<{ n: number }>(db.sql, "jobs", async (m, { signal }) => {
      await sleep(m.payload.n === 1 ? 100 : 10_000);
      if (!signal.aborted) finished.push(m.payload.n);
    }, { gracefulMs: 500, log: () => {} });
    await send(db.sql, "jobs", { n: 1 });
    await send(db.sql, "jobs", { n: 2 });
    await eventually("both claimed", async () => (await db.sql`select 1 from tributary.queue_messages where receipt is not null`).length === 2, 5_000);
    const stopping = Date.now();
    await first.stop();
    expect(Date.now() - stopping).toBeLessThan(2_000);
    expect(finished).toEqual([1]);
    const second: number[] = [];
    workers.push(await work<{ n: number }>(db.sql, "jobs", (m) => void second.push(m.payload.n), { log: () => {} }));
    await eventually("the released message handled by the next worker (not after 60 s)", () => second.length === 1, 5_000);
    expect(second).toEqual([2]);
  });

  it("workers VACUUM the queue table once dead rows pile up; a role that may not says so and leaves it to autovacuum", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs");
    await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, 3000) g`;
    const vacuums = async () => {
      const [row] = await db.sql<{ n: string }[]>`select vacuum_count::text as n from pg_stat_user_tables where relid = 'tributary.queue_messages'::regclass`;
      return Number(row!.n);
    };
    const before = await vacuums();
    const options = { vacuum: { deadRows: 500, checkEveryMs: 100 }, log: () => {} };
    workers.push(await work(db.sql, "jobs", () => {}, options), await work(db.sql, "jobs", () => {}, options));
    await eventually("drained", async () => (await db.sql`select 1 from tributary.queue_messages limit 1`).length === 0, 20_000);
    await eventually("vacuumed by a worker", async () => (await vacuums()) > before, 10_000, 100);

    // A role that is not the table's owner: no VACUUM, one line saying why and what to do.
    const role = `tq_${process.pid}`;
    await db.sql.unsafe(`create role ${role} login`);
    try {
      // A worker as migration 0007 documents it (tributary_worker, the queue granted),
      // without MAINTAIN, which 0007 grants the worker role on PostgreSQL 17+.
      await db.sql.unsafe(`grant tributary_worker to ${role}`);
      await db.sql`select tributary.grant_queue(${role}, 'jobs', 'work')`;
      if (backend.version >= 17) await db.sql.unsafe(`revoke maintain on tributary.queue_messages from tributary_worker`);
      const url = new URL(db.url);
      url.username = role;
      url.password = "";
      const app = postgres(url.toString(), { max: 3, onnotice: () => {} });
      const lines: string[] = [];
      try {
        const worker = await work(app, "jobs", () => {}, { log: (m) => lines.push(m) });
        await worker.stop();
      } finally {
        await app.end();
      }
      expect(lines.join("\n")).toMatch(/may not VACUUM tributary\.queue_messages .*autovacuum_naptime/);
    } finally {
      await db.sql.unsafe(`drop owned by ${role}; drop role ${role}`);
    }
  });

  it("a stream-fed FIFO queue gets every event exactly once, each key in stream order, across worker restarts", async () => {
    db = await createTestDatabase(backend);
    const relay = startRelay({ databaseUrl: db.url, slotName: db.slotName, log: () => {} });
    try {
      await createStream(db.sql, "orders", 4);
      await db.sql`select tributary.create_queue('order-work', '{"stream": "orders", "fifo": true}')`;
      const handled: Array<{ id: string; key: string; offset: number; n: number }> = [];
      const handler = async (m: { payload: { id: string; key: string; offset: number; data: { n: number } } }) => {
        handled.push({ id: m.payload.id, key: m.payload.key, offset: m.payload.offset, n: m.payload.data.n });
        await sleep(1);
      };
      const start = () => work(db.sql, "order-work", handler, { concurrency: 4, log: () => {} });
      let worker = await start();
      const append = (from: number, count: number) =>
        appendBatch(db.sql, Array.from({ length: count }, (_, i) => ({ stream: "orders", key: `k${(from + i) % 10}`, type: "OrderPlaced", data: { n: from + i } })));
      await append(0, 150);
      await eventually("some handled", () => handled.length >= 50, 20_000);
      await worker.stop();
      worker = await start();
      workers.push(worker);
      await append(150, 150);
      await eventually("all 300 handled", () => handled.length >= 300, 30_000);
      await sleep(300);
      expect(handled).toHaveLength(300);
      expect(new Set(handled.map((h) => h.id)).size).toBe(300);
      const byKey = new Map<string, number[]>();
      for (const h of handled) byKey.set(h.key, [...(byKey.get(h.key) ?? []), h.n]);
      for (const [, ns] of byKey) expect(ns).toEqual([...ns].sort((a, b) => a - b)); // stream order per key
    } finally {
      await relay.stop();
    }
  });

  it("16 workers in their own processes, some killed -9 mid-handler: every message completes at least once", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { visibilityTimeout: 1, maxDeliveries: 50 });
    await db.sql`create table worker_log (label text, message_id bigint, n int)`;
    const total = 2_000;
    await db.sql`select tributary.send('jobs', jsonb_build_object('n', g)) from generate_series(1, ${total}) g`;
    const env = { DATABASE_URL: db.url, QUEUE: "jobs", CONCURRENCY: "4" };
    const children: FixtureChild[] = Array.from({ length: 16 }, (_, i) => fixture.start(`w${i}-0`, { ...env, LABEL: `w${i}-0` }));
    await Promise.all(children.map((c) => c.waitJoined(60_000)));
    for (let round = 1; round <= 4; round++) {
      await sleep(300);
      for (const victim of [round % 16, (round * 5) % 16]) {
        await children[victim]!.kill();
        children[victim] = fixture.start(`w${victim}-${round}`, { ...env, LABEL: `w${victim}-${round}` });
      }
    }
    await eventually("the queue drained", async () => (await db.sql`select 1 from tributary.queue_messages limit 1`).length === 0, 60_000, 200);
    const [row] = await db.sql`select count(distinct n)::int as distinct, count(*)::int as handled from worker_log`;
    expect(row?.distinct).toBe(total);
    expect(await db.sql`select 1 from tributary.queue_dead_letters`).toHaveLength(0);
    await Promise.all(children.map((c) => c.kill()));
  }, 120_000);
});
