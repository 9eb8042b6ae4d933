/**
 * `tributary dashboard` (README "Dashboard"; apps/cli dashboard-server.ts and
 * dashboard/) in a real browser: Debian's headless Chromium driven by
 * playwright-core loads the page of a running `tributary dashboard` against
 * a live pipeline (a relay, a consumer group member, a queue with a dead
 * letter), sees the stream's count follow the events appended, finds the
 * ingest chart drawn, and redrives the dead letter through the confirmation.
 * The screenshot goes to .tributary/test-artifacts/dashboard.png.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, consumer, createQueue, createStream, send } from "@tributary/client";
import { migrate } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { Cluster, findInstallation } from "@tributary/testkit";
import { killCliChildren, repoRoot, startCli } from "./support/cli.ts";
import { eventually } from "./support/processes.ts";
import { countEvents } from "./support/streams.ts";

const SLOT = "tributary";
/** The dashboard's --interval: every wait below is a number of these on top of a start. */
const INTERVAL_S = 0.5;
/** Starting a CLI process (or Chromium) up to its first output, on a loaded machine. */
const PROCESS_START_MS = 30_000;
/** Long enough for a change in the database to reach the page: some intervals, and a loaded machine's slack. */
const UPDATE_MS = 20 * INTERVAL_S * 1000 + 10_000;
/** The colour of a chart's first series (dashboard.js PALETTE[0]). */
const FIRST_SERIES_RGB = [0x2b, 0x6c, 0xb0] as const;

const CHROMIUM = process.env.TRIBUTARY_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, ".tributary", "test-artifacts");

const embedded = findInstallation("embedded18");

/** Starts `tributary dashboard` with `args`; resolves with the URL it printed. */
async function startDashboard(url: string, args: string[]): Promise<string> {
  const child = startCli(["dashboard", "--port", "0", "--interval", String(INTERVAL_S), ...args], { DATABASE_URL: url });
  let pageUrl = "";
  await eventually("tributary dashboard prints its URL", () => {
    pageUrl = /dashboard at (http:\/\/\S+)/.exec(child.output.stderr)?.[1] ?? "";
    return pageUrl !== "" || child.child.exitCode !== null;
  }, PROCESS_START_MS);
  if (pageUrl === "") throw new Error(`tributary dashboard exited: ${child.output.stderr}`);
  return pageUrl;
}

/** Pixels of the canvas in `selector` painted in the first series' colour: a line drawn, not axes alone. */
async function seriesPixels(page: Page, selector: string): Promise<number> {
  return page.$eval(selector, (canvas, rgb) => {
    // The test's types know no DOM: the canvas as far as this reads it.
    const c = canvas as unknown as { width: number; height: number; getContext(kind: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const [r, g, b] = rgb as [number, number, number];
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i]! - r) < 8 && Math.abs(data[i + 1]! - g) < 8 && Math.abs(data[i + 2]! - b) < 8 && data[i + 3]! > 200) n++;
    }
    return n;
  }, FIRST_SERIES_RGB as unknown as number[]);
}

describe("tributary dashboard", () => {
  let cluster: Cluster;
  let sql: Sql;
  let browser: Browser;
  let relay: ReturnType<typeof startRelay>;
  let member: Awaited<ReturnType<typeof consumer>>;

  beforeAll(async () => {
    if ("missing" in embedded) throw new Error(embedded.missing);
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium) or set TRIBUTARY_CHROMIUM`);
    cluster = await Cluster.start(embedded);
    sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
    await migrate(sql, { slotName: SLOT });
    await createStream(sql, "orders", 2);
    await createQueue(sql, "emails", { maxDeliveries: 1 });
    relay = startRelay({ databaseUrl: cluster.url, slotName: SLOT, log: () => {} });
    member = await consumer(sql, { group: "billing", streams: ["orders"], handler: async () => {} });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  afterEach(() => killCliChildren());
  afterAll(async () => {
    await browser?.close();
    await member?.stop();
    await relay?.stop();
    await sql?.end({ timeout: 1 });
    await cluster?.destroy();
  });

  it("shows the pipeline live, draws its charts, and redrives a dead letter after a confirmation", async () => {
    await sql.begin((tx) => appendBatch(tx, Array.from({ length: 40 }, (_, i) => ({ stream: "orders", key: `k${i}`, type: "Placed", data: { i } }))));
    // A dead letter: its one delivery failed.
    const poisonId = await send(sql, "emails", { to: "nobody@example.invalid" });
    const [claimed] = await sql<{ receipt: string }[]>`select receipt::text from tributary.claim('emails', 'test-worker', 1, null)`;
    await sql`select tributary.nack('emails', ${claimed!.receipt}::uuid, 'mailbox does not exist', interval '0')`;
    await eventually("the relay copied the 40 events", async () => (await countEvents(sql)) === 40, PROCESS_START_MS);

    const url = await startDashboard(cluster.url, ["--allow-redrive"]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=[A-Za-z0-9_-]{32}$/);
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(url);
    // The token left the address bar (it stays in the tab's session storage).
    expect(page.url()).not.toContain("token");

    const events = page.locator('[data-stream="orders"] .events');
    await expect.poll(() => events.textContent(), { timeout: UPDATE_MS }).toBe("40");
    await expect.poll(() => page.locator("#connection").getAttribute("data-state"), { timeout: UPDATE_MS }).toBe("live");
    await expect.poll(() => page.locator('[data-slot="tributary"] .badge').first().textContent(), { timeout: UPDATE_MS }).toBe("active");
    await expect.poll(() => page.locator('[data-group="billing"] tbody tr').count(), { timeout: UPDATE_MS }).toBe(2);
    await expect.poll(() => page.locator('[data-queue="emails"] .dead').textContent(), { timeout: UPDATE_MS }).toBe("1");

    // The numbers follow the events as they flow.
    for (let round = 1; round <= 3; round++) {
      await sql.begin((tx) => appendBatch(tx, Array.from({ length: 25 }, (_, i) => ({ stream: "orders", key: `r${round}-${i}`, type: "Placed", data: { round, i } }))));
      await expect.poll(() => events.textContent(), { timeout: UPDATE_MS }).toBe(String(40 + 25 * round));
    }
    await expect.poll(() => page.locator('[data-group="billing"] .group-lag').textContent(), { timeout: UPDATE_MS }).toBe("0");
    // The ingest chart has a line: pixels of its series' colour, and a rate above 0 in the table.
    await expect.poll(() => seriesPixels(page, "#ingest-chart canvas"), { timeout: UPDATE_MS }).toBeGreaterThan(20);
    expect(await page.locator("#ingest-chart").getAttribute("data-series")).toBe("1");
    await expect.poll(() => seriesPixels(page, "#lag-chart canvas"), { timeout: UPDATE_MS }).toBeGreaterThan(0);

    // Browse the dead letters; cancelling the confirmation redrives nothing.
    await page.locator('[data-queue="emails"] .show-dead').click();
    const row = page.locator(`[data-dead-letter="${poisonId}"]`);
    await expect.poll(() => row.locator("td").nth(5).textContent(), { timeout: UPDATE_MS }).toBe("mailbox does not exist");
    expect(await row.locator("td.payload").textContent()).toBe('{"to":"nobody@example.invalid"}');
    await row.locator("input[type=checkbox]").check();
    await page.locator("#redrive-selected").click();
    await expect.poll(() => page.locator("#confirm-text").textContent()).toContain("Redrive 1 dead letter back into queue emails?");
    await page.locator("#confirm button[value=cancel]").click();
    const [stillDead] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_dead_letters where queue = 'emails'`;
    expect(stillDead!.n).toBe(1);

    await page.locator("#redrive-selected").click();
    await page.locator("#confirm-redrive").click();
    await expect.poll(() => page.locator("#dead-message").textContent(), { timeout: UPDATE_MS }).toBe("Redrove 1 dead letter back into queue emails.");
    const [dead] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_dead_letters where queue = 'emails'`;
    expect(dead!.n).toBe(0);
    // Back as a ready message (under a new id), its deliveries reset.
    const [ready] = await sql<{ payload: unknown; deliveries: number }[]>`select payload, deliveries from tributary.claim('emails', 'test-worker', 1, null)`;
    expect(ready).toEqual({ payload: { to: "nobody@example.invalid" }, deliveries: 1 });
    await expect.poll(() => page.locator('[data-queue="emails"] .dead').textContent(), { timeout: UPDATE_MS }).toBe("0");

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    console.log(`dashboard screenshot: ${join(ARTIFACTS, "dashboard.png")}`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("refuses a redrive without --allow-redrive, without the token, and a request that names another host", async () => {
    const [sent] = await sql<{ id: string }[]>`select tributary.send('emails', '{"n": 2}')::text as id`;
    const [claimed] = await sql<{ receipt: string }[]>`select receipt::text from tributary.claim('emails', 'test-worker', 1, null)`;
    await sql`select tributary.nack('emails', ${claimed!.receipt}::uuid, 'no', interval '0')`;
    const readOnly = new URL(await startDashboard(cluster.url, []));
    expect(readOnly.hash).toBe("");
    const post = (base: URL, token: string | null) => fetch(new URL("/api/queues/emails/redrive", base), {
      method: "POST", headers: { "content-type": "application/json", ...(token === null ? {} : { "x-tributary-token": token }) },
      body: JSON.stringify({ ids: [sent!.id] }),
    });
    const off = await post(readOnly, "anything");
    expect(off.status).toBe(403);
    expect(((await off.json()) as { error: string }).error).toContain("--allow-redrive");

    const writable = new URL(await startDashboard(cluster.url, ["--allow-redrive"]));
    const token = new URLSearchParams(writable.hash.slice(1)).get("token")!;
    const none = await post(writable, null);
    expect(none.status).toBe(403);
    expect(((await none.json()) as { error: string }).error).toContain("token");
    expect((await post(writable, token.replace(/^./, (c) => (c === "a" ? "b" : "a")))).status).toBe(403);

    // The page opened without the token's URL: reading works, redrive stays disabled.
    const page = await browser.newPage();
    await page.goto(new URL("/", writable).href);
    await page.locator('[data-queue="emails"] .show-dead').click();
    await expect.poll(() => page.locator(`[data-dead-letter="${sent!.id}"]`).count(), { timeout: UPDATE_MS }).toBe(1);
    expect(await page.locator("#redrive-all").isDisabled()).toBe(true);
    expect(await page.locator("#redrive-off").isVisible()).toBe(true);
    await page.close();

    // A page of another site that rebinds its name to 127.0.0.1 reads nothing.
    const rebound = await new Promise<number>((resolve, reject) => {
      import("node:http").then(({ get }) => get({ host: "127.0.0.1", port: Number(writable.port), path: "/api/snapshot", headers: { host: `evil.example:${writable.port}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject), reject);
    });
    expect(rebound).toBe(403);

    const [stillDead] = await sql<{ n: number }[]>`select count(*)::int as n from tributary.queue_dead_letters where queue = 'emails'`;
    expect(stillDead!.n).toBe(1);
    expect((await post(writable, token)).status).toBe(200);
  });
});
