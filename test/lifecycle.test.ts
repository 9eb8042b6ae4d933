/**
 * Relay lifecycle: an unreachable database is retried with backoff (and said
 * so), and relaying starts by itself once the server is back.
 */
import postgres from "postgres";
import { afterAll, beforeAll, expect, it, describe } from "vitest";
import { append } from "@tributary/client";
import { migrate } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { Cluster, findInstallation, type Installation } from "@tributary/testkit";
import { waitForCount } from "./support/streams.ts";

describe("relay lifecycle [pg18-pgoutput, own cluster]", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await Cluster.start(findInstallation("embedded18") as Installation);
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    await migrate(sql);
    await sql.end();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it("retries an unreachable database with backoff, says so, and relays once it is back", async () => {
    await cluster.stopServer("fast");
    const logs: string[] = [];
    const relay = startRelay({ databaseUrl: cluster.url, slotName: "tributary", log: (m) => logs.push(m) });
    try {
      const deadline = Date.now() + 10_000;
      while (!logs.some((l) => /database unreachable \(ECONNREFUSED\); reconnecting with backoff/.test(l)) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(logs.join("\n")).toMatch(/database unreachable \(ECONNREFUSED\); reconnecting with backoff/);
      const attempts = logs.length;
      await new Promise((r) => setTimeout(r, 1500));
      expect(logs.length - attempts).toBeLessThan(8); // backoff, not a busy loop
      await cluster.startAgain();
      const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
      try {
        await sql.begin((tx) => append(tx, { stream: "s", key: "k", type: "T", data: { back: true } }));
        await waitForCount(sql, 1, 20_000);
      } finally {
        await sql.end();
      }
    } finally {
      await relay.stop();
    }
  });
});
