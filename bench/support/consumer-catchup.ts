/**
 * bench:consumer (a): one group member, in its own process, catches up on a
 * backlog that the relay has already put into the stream. Timed from the
 * consumer() call (joining included) to the handler seeing the last event;
 * the child checks that it saw every event once, offsets dense per
 * partition. Also: its CPU, peak RSS, the CPU of its server backends, and the
 * wall time of its fetch and commit queries (rows fetched per row handled
 * shows refetching).
 */
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { Sql } from "postgres";
import { cpuBetween, cpuSnapshot, processCpuSeconds, type CpuUse } from "./cpu-accounting.ts";
import { onlyProfile, summarizeConsumerProfile, type ProfileSummary } from "./consumer-profile.ts";
import type { CatchupDone, Joined, MemberLauncher } from "./consumer-process.ts";
import { scrapeEvery, type Scraper, type ScrapeSummary } from "./metrics-scraper.ts";
import { fmt, progress } from "./report-table.ts";

export interface CatchupOptions {
  readonly url: string;
  readonly streams: readonly string[];
  readonly events: number;
  readonly batchSize: number;
  readonly concurrency: number;
  /** "each": the handler option (one call per event); "batch": the batchHandler option. */
  readonly handler: "each" | "batch";
  readonly group: string;
  /** The member connects as a granted reader (url names it), not the superuser. */
  readonly asReader?: boolean;
  /** The member serves its metrics, scraped every second from its consumer() call to its last event. */
  readonly metrics?: boolean;
  /** Run the member under node --cpu-prof (a fresh folder under this one). */
  readonly profileDir?: string;
}

export interface CatchupResult {
  readonly options: CatchupOptions;
  readonly seconds: number;
  readonly rate: number;
  readonly joined: Joined;
  readonly done: CatchupDone;
  /** ms from the consumer() call until every partition's committed offset reached its end. */
  readonly allCommittedMs: number;
  readonly backendCpuSeconds: number;
  readonly cpu: CpuUse;
  readonly profile: ProfileSummary | null;
  /** With `metrics`: the scrapes during the catch-up. */
  readonly scrapes: ScrapeSummary | null;
}

const APPLICATION_NAME = "bench-consumer-catchup";

/** CPU seconds so far of the server backends serving `applicationName`. */
async function backendCpu(sql: Sql, applicationName: string): Promise<number> {
  const rows = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = ${applicationName}`;
  return rows.reduce((sum, r) => sum + (processCpuSeconds(r.pid) ?? 0), 0);
}

async function committedTotal(sql: Sql, group: string): Promise<number> {
  const [row] = await sql<{ n: string }[]>`select coalesce(sum(next_offset), 0)::text as n from tributary.group_offsets where group_name = ${group}`;
  return Number(row!.n);
}

export async function catchUp(launcher: MemberLauncher, sql: Sql, postmasterPid: number, options: CatchupOptions): Promise<CatchupResult> {
  progress(`(a) ${options.group}: one member catching up on ${fmt.int(options.events)} events (batchSize ${options.batchSize}, concurrency ${options.concurrency}, ${options.handler === "batch" ? "batchHandler" : "handler"})`);
  const profileDir = options.profileDir ? mkdtempSync(join(options.profileDir, `${options.group}-`)) : undefined;
  const before = cpuSnapshot(postmasterPid);
  const member = launcher.start({
    databaseUrl: options.url,
    group: options.group,
    streams: options.streams,
    mode: "catchup",
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    handler: options.handler,
    expectEvents: options.events,
    queryTiming: true,
    applicationName: APPLICATION_NAME,
    ...(profileDir ? { cpuProfileDir: profileDir } : {}),
    ...(options.metrics ? { metrics: true } : {}),
    onProgress: (n) => progress(`  handled ${fmt.int(n)}`),
  });
  let scraper: Scraper | null = null;
  try {
    // Printed before the consumer() call: the scrapes cover the whole timed window.
    if (options.metrics) scraper = scrapeEvery(await member.metricsUrl);
    const joined = await member.joined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`(a) the member did not handle ${options.events} events within 30 minutes`)), 30 * 60_000);
    });
    const done = await Promise.race([member.done, timeout]).finally(() => clearTimeout(timer));
    const scrapes = (await scraper?.stop()) ?? null;
    const cpu = cpuBetween(before, cpuSnapshot(postmasterPid));
    const backendCpuSeconds = await backendCpu(sql, APPLICATION_NAME);
    // The last batch's commit follows its handler: wait for it (it proves the commits, not the speed).
    const deadline = Date.now() + 30_000;
    while ((await committedTotal(sql, options.group)) < options.events) {
      if (Date.now() > deadline) throw new Error(`(a) the group's committed offsets did not reach ${options.events} within 30 s of the last event`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const allCommittedMs = Date.now() - joined.callAt;
    const exit = await member.stop();
    if (exit !== 0) throw new Error(`(a) member exited with ${exit}: ${member.stderr()}`);
    if (done.duplicates !== 0) progress(`(a) note: ${done.duplicates} events were delivered twice (allowed by at-least-once, not counted)`);
    const seconds = (done.lastHandledAt - joined.callAt) / 1000;
    const rate = options.events / seconds;
    progress(`(a) ${seconds.toFixed(2)} s = ${fmt.int(rate)} events/s`);
    const profile = profileDir ? summarizeConsumerProfile(onlyProfile(profileDir), launcher.script, done.windowUs) : null;
    return { options, seconds, rate, joined, done, allCommittedMs, backendCpuSeconds, cpu, profile, scrapes };
  } finally {
    await scraper?.stop();
    await member.kill();
  }
}

/** Table rows for one catch-up run. */
export function catchupRows(r: CatchupResult, label: string): string[][] {
  const perEvent = (s: number) => ((s * 1e6) / r.options.events).toFixed(1);
  const t = r.done.timings;
  const handledPerFetch = r.options.events / Math.max(1, t.fetch.count);
  const at = (ms: number) => ((ms - r.joined.callAt) / 1000).toFixed(2);
  const starts = r.done.spans.map(([first]) => first).sort((a, b) => a - b);
  const ends = r.done.spans.map(([, last]) => last).sort((a, b) => a - b);
  return [
    [
      `${label} catch-up, batchSize ${r.options.batchSize}, concurrency ${r.options.concurrency}${r.options.handler === "batch" ? ", batchHandler" : ""}${r.options.asReader ? ", as a granted reader" : ""}`,
      `${fmt.int(r.rate)} ev/s (${fmt.int(r.options.events)} events in ${r.seconds.toFixed(2)} s from the consumer() call; joined in ${r.joined.joinedAt - r.joined.callAt} ms; all committed at ${(r.allCommittedMs / 1000).toFixed(2)} s)`,
    ],
    [
      `  ${label} member process`,
      `CPU ${r.done.cpuSeconds.toFixed(2)} s (${perEvent(r.done.cpuSeconds)} µs/event, ${(r.done.cpuSeconds / r.seconds).toFixed(2)} cores), peak RSS ${fmt.mb(r.done.peakRssBytes)} (VmHWM)`,
    ],
    [
      `  ${label} server`,
      `member's backends ${r.backendCpuSeconds.toFixed(2)} s CPU (${perEvent(r.backendCpuSeconds)} µs/event); whole server ${(r.cpu.server / r.cpu.wallSeconds).toFixed(2)} cores, others ${(r.cpu.others / r.cpu.wallSeconds).toFixed(2)} cores`,
    ],
    [
      `  ${label} queries until the last event (wall)`,
      `${fmt.int(t.fetch.count)} fetches ${fmt.int(t.fetch.ms)} ms (${(t.fetch.ms / t.fetch.count).toFixed(1)} ms each, ${fmt.pct(t.fetch.ms / 1000 / r.seconds)} of the run), ${fmt.int(t.fetch.rows)} rows fetched = ${(t.fetch.rows / r.options.events).toFixed(2)} per event handled (${fmt.int(handledPerFetch)} handled per fetch); ${fmt.int(t.commit.count)} commits ${fmt.int(t.commit.ms)} ms (${(t.commit.ms / Math.max(1, t.commit.count)).toFixed(1)} ms each)`,
    ],
    [
      `  ${label} partitions over time`,
      `${r.done.spans.length} partitions: first event handled between ${at(starts[0]!)} and ${at(starts.at(-1)!)} s, last event between ${at(ends[0]!)} and ${at(ends.at(-1)!)} s (of ${r.seconds.toFixed(2)} s)`,
    ],
  ];
}
