/**
 * The sockets connectPostgres hands postgres.js (docs/ARCHITECTURE.md, Known
 * traps: postgres.js leaves Nagle on): TCP_NODELAY, unix sockets, several
 * hosts. Verified TLS over them (the server name, the certificate checks) is
 * test/tls.test.ts.
 */
import postgres, { type Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectPostgres } from "@tributary/client";
import { freePort } from "@tributary/testkit";

const server = inject("servers")[0]!;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One COPY of two rows: CopyData, CopyData, then CopyDone, each a small write. */
async function copyMs(sql: Sql): Promise<number> {
  const started = performance.now();
  const copy = await sql`copy connect_probe (x) from stdin`.writable();
  await new Promise<void>((resolve, reject) => {
    copy.once("error", reject);
    copy.once("finish", resolve);
    copy.write("1\n");
    copy.end("2\n");
  });
  return performance.now() - started;
}

describe("connectPostgres's sockets", () => {
  const opened: Sql[] = [];
  const open = (sql: Sql) => (opened.push(sql), sql);
  beforeAll(async () => {
    const sql = open(postgres(server.url, { max: 1, onnotice: () => {} }));
    await sql`create table if not exists connect_probe (x int)`;
  });
  afterAll(async () => {
    await Promise.all(opened.map((sql) => sql.end({ timeout: 1 })));
    const sql = postgres(server.url, { max: 1, onnotice: () => {} });
    await sql`drop table if exists connect_probe`;
    await sql.end();
  });

  it("send a COPY's last packet at once, not after the server's delayed ACK (TCP_NODELAY)", async (ctx) => {
    const plain = open(postgres(server.url, { max: 1, onnotice: () => {} }));
    const ours = open(connectPostgres(server.url, { max: 1, onnotice: () => {} }));
    const withNagle: number[] = [];
    const withoutNagle: number[] = [];
    // Interleaved, so the machine's load weighs on both alike.
    for (let i = 0; i < 15; i++) {
      withNagle.push(await copyMs(plain));
      withoutNagle.push(await copyMs(ours));
    }
    // Linux delays an ACK 40 ms at least; a system that does not shows nothing to compare.
    if (median(withNagle) < 35) ctx.skip(`plain postgres.js COPY took ${median(withNagle).toFixed(1)} ms: no delayed ACK here`);
    expect(median(withNagle) - median(withoutNagle), `medians: Nagle on ${median(withNagle).toFixed(1)} ms, off ${median(withoutNagle).toFixed(1)} ms`)
      .toBeGreaterThan(30);
  });

  it("go to the next host when one refuses, as postgres.js's own host list does", async () => {
    const port = Number(new URL(server.url).port);
    const refusing = await freePort();
    const sql = open(connectPostgres(server.url, { max: 2, onnotice: () => {}, // postgres.js accepts host and port lists (its types say string and number).
      host: ["127.0.0.1", "127.0.0.1"] as unknown as string, port: [refusing, port] as unknown as number }));
    // Two connections, each trying the refusing host first or second.
    const [a, b] = await Promise.all([
      sql<{ pid: number }[]>`select pg_backend_pid() as pid, pg_sleep(0.2)`,
      sql<{ pid: number }[]>`select pg_backend_pid() as pid, pg_sleep(0.2)`,
    ]);
    expect(a![0]!.pid).not.toBe(b![0]!.pid);
  });

  it("use a unix socket when given one", async (ctx) => {
    if (!server.dataDir) return ctx.skip("an external server: no socket directory known");
    const port = new URL(server.url).port;
    const sql = open(connectPostgres(server.url, { max: 1, onnotice: () => {}, path: `${server.dataDir}/.s.PGSQL.${port}` }));
    const [row] = await sql<{ addr: string | null }[]>`select inet_server_addr()::text as addr`;
    expect(row!.addr).toBeNull(); // no TCP address: a unix socket
  });
});
