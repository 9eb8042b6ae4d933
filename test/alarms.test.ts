/**
 * Slot alarms in `tributary status` (packages/client slot-alarms.ts, README
 * "Operations"): retained WAL past a threshold, wal_status extended or
 * unreserved, a slot without an active relay for too long, an unlimited
 * max_slot_wal_keep_size; `--check` exits 1 while any is on. A cluster of
 * its own: the test changes server settings and fills WAL.
 */
import postgres, { type Sql } from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "@tributary/migrate";
import { Cluster, findInstallation } from "@tributary/testkit";
import { killCliChildren, runCli, startCli } from "./support/cli.ts";
import { sample, scrape } from "./support/metrics.ts";
import { eventually } from "./support/processes.ts";

const SLOT = "tributary";
const embedded = findInstallation("embedded18");

describe("slot alarms", () => {
  let cluster: Cluster;
  let sql: Sql;
  const status = (...args: string[]) => runCli(["status", ...args], { DATABASE_URL: cluster.url });
  const alarmLines = (stdout: string) => stdout.split("\n").filter((l) => l.startsWith("ALARM: "));

  beforeAll(async () => {
    if ("missing" in embedded) throw new Error(embedded.missing);
    cluster = await Cluster.start(embedded);
    sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
    await migrate(sql, { slotName: SLOT });
  });
  afterEach(() => killCliChildren());
  afterAll(async () => {
    await sql?.end({ timeout: 1 });
    await cluster?.destroy();
  });

  it("an unlimited max_slot_wal_keep_size and a slot no relay has read for longer than --max-inactive are alarms; --check exits 1", async () => {
    const [checkpoint] = await sql<{ since: number }[]>`select extract(epoch from now() - updated_at)::float8 as since from tributary.relay_checkpoints`;
    const since = checkpoint!.since;
    // No relay ever ran: the slot is inactive since migrate wrote its checkpoint.
    await new Promise((r) => setTimeout(r, Math.max(0, 1_500 - since * 1000)));
    const run = await status("--check", "--max-inactive", "1");
    expect(run.code, run.stderr).toBe(1);
    const alarms = alarmLines(run.stdout);
    expect(alarms).toContainEqual(expect.stringMatching(/^ALARM: max_slot_wal_keep_size is unlimited \(-1\): a slot no relay reads keeps WAL until the disk is full\. Set it .*ALTER SYSTEM SET max_slot_wal_keep_size/));
    expect(alarms).toContainEqual(expect.stringMatching(new RegExp(`^ALARM: slot '${SLOT}' has had no active relay for \\d+ s \\(more than 1 s\\): start tributary relay`)));

    // Turned off or above what it is, nothing is on: exit 0, no ALARM line.
    const quiet = await status("--check", "--max-inactive", "3600", "--no-wal-keep-limit");
    expect([quiet.code, alarmLines(quiet.stdout)], quiet.stderr).toEqual([0, []]);
    const json = await status("--json", "--max-inactive", "3600", "--no-wal-keep-limit");
    expect((JSON.parse(json.stdout) as { alarms: string[] }).alarms).toEqual([]);
  });

  it("the active relay logs each slot alarm when it turns on and when it clears, and sets it in its metrics", async () => {
    const ALARM_INTERVAL_S = 1;
    // Any WAL kept is past 1 byte: on from the relay's first look.
    const relay = startCli(["relay", "--slot", SLOT, "--max-retained-wal", "1B", "--alarm-interval", String(ALARM_INTERVAL_S), "--metrics-port", "0"], { DATABASE_URL: cluster.url });
    await eventually("the relay logs its slot's alarms", () =>
      new RegExp(`ALARM: slot '${SLOT}' keeps \\d+ (B|KiB|MiB) of WAL, more than 1 B`).test(relay.output.stderr) && /ALARM: max_slot_wal_keep_size is unlimited/.test(relay.output.stderr),
    30_000 + 3 * ALARM_INTERVAL_S * 1000);
    const metricsUrl = /metrics at (\S+)/.exec(relay.output.stderr)![1]!;
    const text = await scrape(metricsUrl);
    for (const alarm of ["retained_wal", "wal_keep_unlimited"]) expect(sample(text, "tributary_relay_slot_alarm", { slot: SLOT, alarm }), alarm).toBe(1);
    expect(sample(text, "tributary_relay_slot_alarm", { slot: SLOT, alarm: "wal_status" })).toBe(0);
    // Each alarm is logged once while it stays on, whatever the number of looks.
    await new Promise((r) => setTimeout(r, 3 * ALARM_INTERVAL_S * 1000));
    expect(relay.output.stderr.match(/ALARM: max_slot_wal_keep_size/g)).toHaveLength(1);

    // A limit set: that alarm clears at the next look.
    await sql`alter system set max_slot_wal_keep_size = '10GB'`;
    await sql`select pg_reload_conf()`;
    await eventually("the relay logs the alarm cleared", () => /alarm cleared: wal keep unlimited on slot/.test(relay.output.stderr), 30_000 + 3 * ALARM_INTERVAL_S * 1000);
    expect(sample(await scrape(metricsUrl), "tributary_relay_slot_alarm", { slot: SLOT, alarm: "wal_keep_unlimited" })).toBe(0);
    relay.child.kill("SIGTERM");
    expect((await relay.exited).code).toBe(0);
    await sql`alter system reset max_slot_wal_keep_size`;
    await sql`select pg_reload_conf()`;
  });

  it("a slot keeping more WAL than --max-retained-wal, then past max_slot_wal_keep_size (unreserved), then lost", async () => {
    // 64 MB of WAL the slot keeps (no relay runs), four segments past a 16 MB max_slot_wal_keep_size.
    await sql`alter system set max_slot_wal_keep_size = '16MB'`;
    await sql`select pg_reload_conf()`;
    await sql`create table filler (id int, pad text)`;
    await sql`insert into filler select g, repeat('x', 1000) from generate_series(1, 60000) g`;
    await sql`select pg_switch_wal()`;
    const retained = await status("--max-inactive", "3600", "--max-retained-wal", "8MB");
    expect(retained.code, retained.stderr).toBe(0); // without --check, alarms do not change the exit code
    expect(alarmLines(retained.stdout)).toContainEqual(expect.stringMatching(new RegExp(`^ALARM: slot '${SLOT}' keeps \\d+ MiB of WAL, more than 8 MiB: no relay reads it`)));

    // The server reports the slot unreserved once the WAL it keeps passes max_slot_wal_keep_size.
    const [slot] = await sql<{ walStatus: string }[]>`select wal_status as "walStatus" from pg_replication_slots where slot_name = ${SLOT}`;
    expect(slot?.walStatus).toBe("unreserved");
    const unreserved = await status("--check", "--max-inactive", "3600");
    expect(unreserved.code).toBe(1);
    expect(alarmLines(unreserved.stdout)).toContainEqual(`ALARM: slot '${SLOT}' is past max_slot_wal_keep_size (wal_status unreserved): its WAL will be removed at the next checkpoint and the slot lost unless its relay catches up now`);

    // A checkpoint removes that WAL: the slot is lost, which status says too.
    await sql`checkpoint`;
    await eventually("the slot is lost", async () => (await sql<{ s: string }[]>`select wal_status as s from pg_replication_slots where slot_name = ${SLOT}`)[0]?.s === "lost");
    const lost = await status("--check", "--max-inactive", "3600");
    expect(lost.code).toBe(1);
    expect(alarmLines(lost.stdout)).toContainEqual(expect.stringMatching(new RegExp(`^ALARM: slot '${SLOT}' is lost: events may be missing`)));
  });
});
