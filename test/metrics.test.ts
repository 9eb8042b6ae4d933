/**
 * The relay's /metrics (README "Metrics"; services/relay relay-metrics.ts),
 * scraped from a real `tributary relay --metrics-port` process: its counters
 * equal what the stream holds, its write histogram counts its batches, the
 * slot's figures agree with the server's, a standby reports itself, and
 * Prometheus' own promtool accepts the output. A cluster of its own: the lag
 * of a slot is WAL the server wrote anywhere, and other tests write WAL.
 */
import postgres, { type Sql } from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { appendBatch, consumer, createStream, work } from "@tributary/client";
import { serveMetrics } from "@tributary/core";
import { startRelay } from "@tributary/relay";
import { migrate } from "@tributary/migrate";
import { Cluster, findInstallation } from "@tributary/testkit";
import { killCliChildren, startCli } from "./support/cli.ts";
import { promtoolCheck, sample, scrape } from "./support/metrics.ts";
import { eventually } from "./support/processes.ts";
import { countEvents } from "./support/streams.ts";

const SLOT = "tributary";
/** Starting the CLI up to its first output, on a loaded machine. */
const PROCESS_START_MS = 30_000;

/** Starts a CLI command that serves metrics on a free port; resolves with the URL it printed. */
async function withMetrics(args: string[], url: string): Promise<{ metricsUrl: string; output: { stdout: string; stderr: string } }> {
  const child = startCli(args, { DATABASE_URL: url });
  let metricsUrl = "";
  await eventually(`tributary ${args[0]} prints its metrics URL`, () => {
    metricsUrl = /metrics at (http:\/\/\S+)/.exec(child.output.stderr)?.[1] ?? "";
    return metricsUrl !== "" || child.child.exitCode !== null;
  }, PROCESS_START_MS);
  if (metricsUrl === "") throw new Error(`tributary ${args.join(" ")} exited: ${child.output.stderr}`);
  return { metricsUrl, output: child.output };
}

const relayWithMetrics = (url: string) => withMetrics(["relay", "--slot", SLOT, "--metrics-port", "0"], url);

const embedded = findInstallation("embedded18");

describe("relay metrics", () => {
  let cluster: Cluster;
  let sql: Sql;

  beforeAll(async () => {
    if ("missing" in embedded) throw new Error(embedded.missing);
    cluster = await Cluster.start(embedded);
    sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
    await migrate(sql, { slotName: SLOT });
    await createStream(sql, "orders", 4);
  });
  afterEach(() => killCliChildren());
  afterAll(async () => {
    await sql?.end({ timeout: 1 });
    await cluster?.destroy();
  });

  it("counts what the stream holds, times its writes, reports the slot as the server does, and passes promtool", async () => {
    // 30 transactions of 100 events and 50 of one, written before the relay starts: a backlog of about 2 MB of WAL.
    for (let t = 0; t < 30; t++) {
      await sql.begin((tx) => appendBatch(tx, Array.from({ length: 100 }, (_, i) => ({ stream: "orders", key: `k${i}`, type: "Placed", data: { t, i, pad: "x".repeat(300) } }))));
    }
    for (let t = 0; t < 50; t++) await sql.begin((tx) => appendBatch(tx, [{ stream: "orders", key: `single${t}`, type: "Placed", data: { t } }]));
    const { metricsUrl, output } = await relayWithMetrics(cluster.url);
    const labels = { slot: SLOT };

    let text = "";
    await eventually("the relay's counter reaches the 3,050 events", async () => {
      text = await scrape(metricsUrl);
      return sample(text, "tributary_relay_events_total", labels) === 3_050;
    }, PROCESS_START_MS + 30_000);
    expect(await countEvents(sql)).toBe(3_050);
    expect(sample(text, "tributary_relay_transactions_total", labels)).toBe(80);
    expect(sample(text, "tributary_relay_rejected_messages_total", labels)).toBe(0);
    const batches = sample(text, "tributary_relay_batches_total", labels)!;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(sample(text, "tributary_relay_batch_write_duration_seconds_count", labels)).toBe(batches);
    expect(sample(text, "tributary_relay_batch_write_duration_seconds_sum", labels)).toBeGreaterThan(0);
    expect(sample(text, "tributary_relay_batch_write_duration_seconds_bucket", { ...labels, le: "+Inf" })).toBe(batches);
    expect(sample(text, "tributary_relay_active", labels)).toBe(1);
    expect(sample(text, "tributary_slot_wal_status", { ...labels, status: "reserved" })).toBe(1);
    for (const status of ["extended", "unreserved", "lost"]) expect(sample(text, "tributary_slot_wal_status", { ...labels, status })).toBe(0);
    expect(sample(text, "process_resident_memory_bytes")).toBeGreaterThan(0);

    // Caught up, the lag falls to what the relay's own checkpoint writes leave (it acknowledges them every status interval).
    await eventually("the relay's lag falls below 64 kB once caught up", async () => {
      text = await scrape(metricsUrl);
      const lag = sample(text, "tributary_relay_lag_bytes", labels);
      return lag !== undefined && lag < 65_536;
    }, 60_000);
    // The slot's figures are the server's: read before and after a scrape, they bracket it.
    const slotNow = async () => (await sql<{ lag: string; retained: string }[]>`
      select (pg_current_wal_lsn() - confirmed_flush_lsn)::text as lag, (pg_current_wal_lsn() - restart_lsn)::text as retained
        from pg_replication_slots where slot_name = ${SLOT}`)[0]!;
    const walNow = async () => BigInt((await sql<{ lsn: string }[]>`select (pg_current_wal_lsn() - '0/0')::text as lsn`)[0]!.lsn);
    let bracketed = false;
    for (let attempt = 0; attempt < 20 && !bracketed; attempt++) {
      const walBefore = await walNow();
      const before = await slotNow();
      text = await scrape(metricsUrl);
      const after = await slotNow();
      // Only when nothing moved in between is the comparison exact.
      if ((await walNow()) !== walBefore || before.lag !== after.lag || before.retained !== after.retained) continue;
      expect(sample(text, "tributary_slot_retained_wal_bytes", labels)).toBe(Number(after.retained));
      expect(sample(text, "tributary_relay_lag_bytes", labels)).toBe(Math.max(0, Number(after.lag)));
      bracketed = true;
    }
    expect(bracketed, "the WAL never stood still for the length of a scrape").toBe(true);
    expect(sample(text, "tributary_relay_lag_seconds", labels)).toBeGreaterThanOrEqual(0);

    const lint = await promtoolCheck(text);
    expect(lint, `promtool check metrics on:\n${text}`).toEqual({ code: 0, output: "" });
    expect(output.stderr).not.toMatch(/error/i);
  });

  it("a standby says so: tributary_relay_active 0 while another relay is active, and the counters start at 0", async () => {
    const active = await relayWithMetrics(cluster.url);
    await eventually("the first relay is active", async () => sample(await scrape(active.metricsUrl), "tributary_relay_active", { slot: SLOT }) === 1, PROCESS_START_MS);
    const standby = await relayWithMetrics(cluster.url);
    await eventually("the second relay waits as a standby", () => /standby/.test(standby.output.stderr), PROCESS_START_MS);
    const text = await scrape(standby.metricsUrl);
    expect(sample(text, "tributary_relay_active", { slot: SLOT })).toBe(0);
    expect(sample(text, "tributary_relay_events_total", { slot: SLOT })).toBe(0);
    expect(sample(text, "tributary_relay_lag_bytes", { slot: SLOT }), "a standby reads no slot figures").toBeUndefined();
    expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
  });

  it("tributary metrics serves the database's streams, slots, groups and queues as status and groups read them", async () => {
    await sql`insert into tributary.consumer_groups (group_name) values ('billing')`;
    const ends = await sql<{ partition: number; next: string }[]>`select partition, next_offset::text as next from tributary.partition_offsets where stream = 'orders' order by 1`;
    for (const e of ends) await sql`insert into tributary.group_offsets (group_name, stream, partition, next_offset) values ('billing', 'orders', ${e.partition}, ${Math.floor(Number(e.next) / 2)})`;
    await sql`select tributary.create_queue('mail')`;
    for (let i = 0; i < 3; i++) await sql`select tributary.send('mail', ${sql.json({ i })})`;
    const { metricsUrl } = await withMetrics(["metrics", "--port", "0"], cluster.url);

    let text = "";
    // The relays of the tests before were killed: their lock goes with their connection.
    await eventually("no relay holds the slot", async () => {
      text = await scrape(metricsUrl);
      return sample(text, "tributary_slot_active_relays", { slot: SLOT }) === 0;
    }, PROCESS_START_MS);
    expect(sample(text, "tributary_database_up")).toBe(1);
    expect(sample(text, "tributary_stream_events_total", { stream: "orders" })).toBe(ends.reduce((n, e) => n + Number(e.next), 0));
    expect(sample(text, "tributary_stream_partitions", { stream: "orders" })).toBe(4);
    expect(sample(text, "tributary_stream_size_bytes", { stream: "orders" })).toBeGreaterThan(0);
    for (const e of ends) {
      const labels = { group: "billing", stream: "orders", partition: String(e.partition) };
      const committed = Math.floor(Number(e.next) / 2);
      expect(sample(text, "tributary_group_committed_offset", labels)).toBe(committed);
      expect(sample(text, "tributary_group_end_offset", labels)).toBe(Number(e.next));
      expect(sample(text, "tributary_group_lag_events", labels)).toBe(Number(e.next) - committed);
      expect(sample(text, "tributary_group_behind_retention", labels)).toBe(0);
    }
    expect(sample(text, "tributary_group_alive_members", { group: "billing" })).toBe(0);
    expect(sample(text, "tributary_queue_ready_messages", { queue: "mail" })).toBe(3);
    expect(sample(text, "tributary_queue_dead_messages", { queue: "mail" })).toBe(0);
    expect(sample(text, "tributary_queue_oldest_ready_age_seconds", { queue: "mail" })).toBeGreaterThanOrEqual(0);
    expect(sample(text, "tributary_slot_wal_status", { slot: SLOT, status: "reserved" })).toBe(1);
    expect(sample(text, "tributary_slot_retained_wal_bytes", { slot: SLOT })).toBeGreaterThan(0);
    // The test cluster leaves max_slot_wal_keep_size unlimited: that is the one alarm.
    expect(sample(text, "tributary_alarms")).toBe(1);
    expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
  });

  it("tributary metrics answers while the database does not: tributary_database_up 0 and nothing else of it", async () => {
    const { metricsUrl, output } = await withMetrics(["metrics", "--port", "0"], "postgres://postgres@127.0.0.1:1/postgres");
    const text = await scrape(metricsUrl);
    expect(sample(text, "tributary_database_up")).toBe(0);
    expect(text).not.toMatch(/^tributary_stream_/m);
    expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    await eventually("the exporter says why", () => /reading the database failed: .*ECONNREFUSED/.test(output.stderr), PROCESS_START_MS);
  });

  it("a consumer group member's metrics: events handled per partition, batch durations, a dead letter, and its partitions' committed offset, end and lag", async () => {
    await createStream(sql, "payments", 3);
    const relay = startRelay({ databaseUrl: cluster.url, slotName: SLOT, log: () => {} });
    const registry = new Registry();
    const endpoint = await serveMetrics(registry, { port: 0 });
    const member = await consumer(sql, {
      group: "ledger", streams: ["payments"], metrics: registry, retries: 0, onFailure: "dead-letter", log: () => {},
      handler: (event) => {
        if ((event.data as { n: number }).n === 7) throw new Error("n = 7 is refused");
      },
    });
    try {
      await sql.begin((tx) => appendBatch(tx, Array.from({ length: 40 }, (_, n) => ({ stream: "payments", key: `p${n % 5}`, type: "Paid", data: { n } }))));
      const ends = async () => sql<{ partition: number; next: string }[]>`select partition, next_offset::text as next from tributary.partition_offsets where stream = 'payments' order by 1`;
      let text = "";
      await eventually("the member committed past every event", async () => {
        text = await scrape(endpoint.url);
        const e = await ends();
        return e.length > 0 && e.every((x) => sample(text, "tributary_consumer_committed_offset", { group: "ledger", stream: "payments", partition: String(x.partition) }) === Number(x.next));
      }, 60_000);
      let handled = 0;
      for (const e of await ends()) {
        const labels = { group: "ledger", stream: "payments", partition: String(e.partition) };
        expect(sample(text, "tributary_consumer_end_offset", labels)).toBe(Number(e.next));
        expect(sample(text, "tributary_consumer_lag_events", labels)).toBe(0);
        handled += sample(text, "tributary_consumer_events_total", labels) ?? 0;
      }
      expect(handled).toBe(40);
      expect(sample(text, "tributary_consumer_handler_failures_total", { group: "ledger", stream: "payments", outcome: "dead_letter" })).toBe(1);
      expect(sample(text, "tributary_consumer_assigned_partitions", { group: "ledger" })).toBe(3);
      expect(sample(text, "tributary_consumer_batch_duration_seconds_count", { group: "ledger", stream: "payments" })).toBeGreaterThanOrEqual(1);
      expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    } finally {
      await member.stop();
      await endpoint.close();
      await relay.stop();
    }
  });

  it("a queue worker's metrics: jobs by outcome, handler durations, jobs in flight, and the queue by state", async () => {
    // Two deliveries, 100 ms apart: a job that always fails is retried once, then dead.
    await sql`select tributary.create_queue('invoices', ${sql.json({ max_deliveries: 2, backoff: { base: 0.1, max: 0.1, jitter: 0 } })})`;
    for (let i = 0; i < 5; i++) await sql`select tributary.send('invoices', ${sql.json({ i })})`;
    const registry = new Registry();
    const endpoint = await serveMetrics(registry, { port: 0 });
    const worker = await work<{ i: number }>(sql, "invoices", (message) => {
      if (message.payload.i === 3) throw new Error("invoice 3 cannot be sent");
    }, { metrics: registry, pollIntervalMs: 100, log: () => {} });
    try {
      let text = "";
      const jobs = (outcome: string) => sample(text, "tributary_queue_jobs_total", { queue: "invoices", outcome });
      await eventually("four jobs completed and one dead", async () => {
        text = await scrape(endpoint.url);
        return jobs("completed") === 4 && jobs("dead") === 1;
      }, 30_000);
      expect(jobs("retried")).toBe(1);
      expect(sample(text, "tributary_queue_job_duration_seconds_count", { queue: "invoices" })).toBe(6);
      expect(sample(text, "tributary_queue_worker_jobs_in_flight", { queue: "invoices" })).toBe(0);
      expect(sample(text, "tributary_queue_dead_messages", { queue: "invoices" })).toBe(1);
      expect(sample(text, "tributary_queue_ready_messages", { queue: "invoices" })).toBe(0);
      expect(sample(text, "tributary_queue_live_workers", { queue: "invoices" })).toBe(1);
      expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    } finally {
      await worker.stop();
      await endpoint.close();
    }
  });
});
