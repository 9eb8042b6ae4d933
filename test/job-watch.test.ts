/**
 * Job status for other services: a queue with notify_states announces every
 * state change (queued, running, failed, succeeded, dead) as it commits, to
 * watchJobs() and to `tributary jobs`; queues without it announce nothing.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createQueue, send, watchJobs, work, type JobStateChange, type QueueWorker } from "@tributary/client";
import { backends, createTestDatabase, type TestDatabase } from "./support/backends.ts";
import { eventually } from "./support/processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const backend = backends().find((b) => b.decoder === "pgoutput")!;
const root = fileURLToPath(new URL("..", import.meta.url));

describe(`job watch [${backend.name}]`, () => {
  let db: TestDatabase;
  const workers: QueueWorker[] = [];
  afterEach(async () => {
    await Promise.allSettled(workers.splice(0).map((w) => w.stop()));
    await db?.drop();
  });

  it("watchJobs sees queued → running → failed → running → succeeded, and a poison job end dead", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { notifyStates: true, maxDeliveries: 2, backoff: { base: 0.05, jitter: 0 } });
    await createQueue(db.sql, "quiet");
    const stop = new AbortController();
    const seen: JobStateChange[] = [];
    const watching = (async () => {
      for await (const change of watchJobs(db.sql, { queue: "jobs", signal: stop.signal })) seen.push(change);
    })();
    await sleep(200);
    let attempts = 0;
    workers.push(await work<{ poison: boolean }>(db.sql, "jobs", (m) => {
      if (m.payload.poison || attempts++ === 0) throw new Error("try again");
    }, { pollIntervalMs: 50, log: () => {} }));
    const ok = await send(db.sql, "jobs", { poison: false });
    await eventually("the first job succeeded", () => seen.some((c) => c.id === ok && c.state === "succeeded"), 10_000);
    const poison = await send(db.sql, "jobs", { poison: true });
    await send(db.sql, "quiet", {});
    await eventually("the poison job dead", () => seen.some((c) => c.id === poison && c.state === "dead"), 10_000);
    stop.abort();
    await watching;
    expect(seen.filter((c) => c.id === ok).map((c) => c.state)).toEqual(["queued", "running", "failed", "running", "succeeded"]);
    expect(seen.filter((c) => c.id === poison).map((c) => c.state)).toEqual(["queued", "running", "failed", "running", "dead"]);
    expect(seen.find((c) => c.state === "dead")?.error).toBe("Error: try again");
    expect(seen.every((c) => c.queue === "jobs")).toBe(true);
  });

  it("tributary jobs QUEUE --id N prints that job's changes as JSON lines; SIGTERM exits 0", async () => {
    db = await createTestDatabase(backend);
    await createQueue(db.sql, "jobs", { notifyStates: true });
    const other = await send(db.sql, "jobs", { n: 0 });
    const { DATABASE_URL: _unset, ...env } = process.env;
    const target = String(Number(other) + 1); // the next id
    const child = spawn(process.execPath, ["apps/cli/bin/tributary.js", "jobs", "jobs", "--id", target], { cwd: root, env: { ...env, DATABASE_URL: db.url }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await eventually("the watcher listening", () => /watching jobs/.test(stderr), 20_000);
    await sleep(200);
    const id = await send(db.sql, "jobs", { n: 1 });
    expect(id).toBe(target);
    workers.push(await work(db.sql, "jobs", () => {}, { log: () => {} }));
    await eventually("succeeded printed", () => stdout.includes(`"succeeded"`), 10_000);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as { id: string; state: string; queue: string });
    expect(lines.map((l) => [l.id, l.state])).toEqual([[target, "queued"], [target, "running"], [target, "succeeded"]]);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
