/**
 * Consumer group members in their own OS processes (consumer-child.ts), so
 * their CPU time and RSS are their own and one can be killed with SIGKILL.
 * The child is bundled once with esbuild (testkit's ChildBundle, like the
 * tests' fixtures): it starts in a fraction of a second and runs plain
 * JavaScript, no loader in between.
 * With `cpuProfileDir` it runs under `node --cpu-prof` (the profile is
 * written when it exits after SIGTERM).
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ChildBundle, ChildLines, spawnChild } from "@tributary/testkit";

export interface HandledEvent {
  readonly stream: string;
  readonly partition: number;
  readonly offset: number;
  readonly committedMs: number;
  readonly handledMs: number;
}

export interface QueryTiming {
  readonly count: number;
  readonly ms: number;
  readonly rows: number;
}

export interface CatchupDone {
  readonly handled: number;
  readonly duplicates: number;
  readonly partitions: number;
  readonly lastHandledAt: number;
  /** Per partition: Date.now() of its first and its last handled event. */
  readonly spans: ReadonlyArray<readonly [number, number]>;
  readonly cpuSeconds: number;
  readonly peakRssBytes: number;
  readonly windowUs: [number, number];
  readonly timings: Record<"fetch" | "commit" | "other", QueryTiming>;
}

export interface Joined {
  readonly memberId: string;
  /** Date.now() just before consumer() was called, and when it resolved (first heartbeat in). */
  readonly callAt: number;
  readonly joinedAt: number;
}

export interface MemberOptions {
  readonly databaseUrl: string;
  readonly group: string;
  readonly streams: readonly string[];
  readonly mode: "catchup" | "report";
  readonly batchSize: number;
  readonly concurrency: number;
  readonly sessionTimeoutMs?: number;
  /** "each" (default): the handler option; "batch": the batchHandler option. */
  readonly handler?: "each" | "batch";
  /** catchup: distinct events to handle before reporting done. */
  readonly expectEvents?: number;
  readonly queryTiming?: boolean;
  /** application_name of the member's connections (to find its server backends). */
  readonly applicationName?: string;
  readonly cpuProfileDir?: string;
  /** Register the member's metrics and serve them over HTTP (see `metricsUrl`). */
  readonly metrics?: boolean;
  /** Called with each batch of handled events (report mode). */
  readonly onEvents?: (events: HandledEvent[]) => void;
  readonly onProgress?: (handled: number) => void;
}

export class MemberProcess {
  readonly joined: Promise<Joined>;
  /** The child's /metrics URL (with `metrics`), printed before it joins. */
  readonly metricsUrl: Promise<string>;
  readonly done: Promise<CatchupDone>;
  readonly exited: Promise<number | null>;
  private peak = 0;
  private readonly lines: ChildLines;

  constructor(child: ChildProcess, options: MemberOptions) {
    this.lines = new ChildLines(child, {
      label: "consumer child",
      onLine: (tag, rest) => {
        if (tag === "rss") this.peak = Math.max(this.peak, Number(rest));
        else if (tag === "events") options.onEvents?.(rest.split(";").map(parseEvent));
        else if (tag === "progress") options.onProgress?.(Number(rest));
      },
    });
    this.metricsUrl = this.lines.once("metrics");
    this.joined = this.lines.once("joined", (rest) => JSON.parse(rest) as Joined);
    this.done = this.lines.once("done", (rest) => JSON.parse(rest) as CatchupDone);
    this.exited = this.lines.exited;
  }

  get pid(): number {
    return this.lines.pid;
  }

  /** Peak RSS (bytes) sampled every 200 ms. */
  sampledPeakRss(): number {
    return this.peak;
  }

  stderr(): string {
    return this.lines.stderr();
  }

  /** kill -9, now. Resolves when the process is gone. */
  async kill(): Promise<void> {
    await this.lines.kill();
  }

  /** SIGTERM (the member finishes its batches, commits, leaves), SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<number | null> {
    return this.lines.stop(graceMs);
  }
}

function parseEvent(text: string): HandledEvent {
  const [stream, partition, offset, committedMs, handledMs] = text.split("|");
  return { stream: stream!, partition: Number(partition), offset: Number(offset), committedMs: Number(committedMs), handledMs: Number(handledMs) };
}

/** The bundled child; build once per benchmark run. */
export class MemberLauncher {
  private constructor(private readonly bundle: ChildBundle) {}

  /** `clientSource`: bundle against another copy of @tributary/client (its src/index.ts), e.g. a proposed patch. */
  static async build(clientSource?: string): Promise<MemberLauncher> {
    // Module markers in the bundle ("// packages/client/src/…") are what consumer-profile.ts reads.
    return new MemberLauncher(await ChildBundle.build({
      prefix: "tributary-bench-consumer-",
      entries: { "consumer-child": fileURLToPath(new URL("./consumer-child.ts", import.meta.url)) },
      alias: clientSource ? { "@tributary/client": clientSource } : {},
    }));
  }

  get script(): string {
    return this.bundle.script("consumer-child");
  }

  start(options: MemberOptions): MemberProcess {
    const child = spawnChild(this.script, {
      cpuProfileDir: options.cpuProfileDir,
      env: {
        DATABASE_URL: options.databaseUrl,
        GROUP: options.group,
        STREAMS: options.streams.join(","),
        MODE: options.mode,
        BATCH_SIZE: String(options.batchSize),
        CONCURRENCY: String(options.concurrency),
        SESSION_TIMEOUT_MS: String(options.sessionTimeoutMs ?? 10_000),
        EXPECT_EVENTS: String(options.expectEvents ?? 0),
        HANDLER: options.handler ?? "each",
        QUERY_TIMING: options.queryTiming ? "1" : "",
        APPLICATION_NAME: options.applicationName ?? "bench-consumer",
        ...(options.metrics ? { METRICS: "1" } : {}),
      },
    });
    return new MemberProcess(child, options);
  }

  dispose(): void {
    this.bundle.dispose();
  }
}
