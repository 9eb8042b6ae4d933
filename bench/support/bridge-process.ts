/**
 * The Kafka bridge under test in its own OS process (bridge-child.ts), so
 * its CPU time and peak RSS are its own; and (c)'s Kafka reader in another
 * (bridge-reader-child.ts). Bundled once with esbuild (testkit's
 * ChildBundle), like bench:consumer's members: it starts in a fraction of a
 * second and runs plain JavaScript, no loader in between. The bundle
 * resolves the bridge's imports of `postgres` and `kafkajs` to
 * bridge-timing.ts (the real modules with timers on). `bridgeSource` /
 * `clientSource` bundle against other copies of @tributary/kafka-bridge /
 * @tributary/client, to measure a proposed change. With `cpuProfileDir` the
 * child runs under `node --cpu-prof` (the profile is written when it exits
 * after SIGTERM).
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Plugin } from "esbuild";
import { ChildBundle, ChildLines, spawnChild } from "@tributary/testkit";
import type { BridgeTimings } from "./bridge-timing.ts";

const timingModule = fileURLToPath(new URL("./bridge-timing.ts", import.meta.url));
const readerModule = fileURLToPath(new URL("./bridge-reader-child.ts", import.meta.url));

export interface BridgeStart {
  /** Date.now() and process.hrtime (µs, CLOCK_MONOTONIC) just before startBridge() was called. */
  readonly epochMs: number;
  readonly hrUs: number;
}

export interface BridgeOptions {
  readonly databaseUrl: string;
  readonly brokers: readonly string[];
  readonly streams: readonly string[];
  readonly group: string;
  /** Topic = prefix + stream (default ""). */
  readonly topicPrefix?: string;
  readonly batchSize: number;
  readonly concurrency: number;
  /** The bridge's `producers` (default: its own default). */
  readonly producers?: number;
  readonly cpuProfileDir?: string;
  /** Extra node flags for the child (e.g. --max-semi-space-size=32). */
  readonly nodeArgs?: readonly string[];
}

export class BridgeProcess {
  readonly started: Promise<BridgeStart>;
  /** Date.now() when the bridge forwards (routes checked, producer connected, group joined). */
  readonly ready: Promise<number>;
  /** Rejects when the child reports a fatal error or exits (also after stop(): race it only while the bridge should run). */
  readonly failed: Promise<never>;
  readonly exited: Promise<number | null>;
  private peak = 0;
  private readonly lines: ChildLines;
  private statsWaiters: Array<(t: BridgeTimings) => void> = [];

  constructor(child: ChildProcess) {
    this.lines = new ChildLines(child, {
      label: "bridge child",
      onLine: (tag, rest) => {
        if (tag === "rss") this.peak = Math.max(this.peak, Number(rest));
        else if (tag === "stats") this.statsWaiters.shift()?.(JSON.parse(rest) as BridgeTimings);
      },
    });
    this.started = this.lines.once("start", (rest) => JSON.parse(rest) as BridgeStart);
    this.ready = this.lines.once("ready", (rest) => (JSON.parse(rest) as { epochMs: number }).epochMs);
    this.failed = this.lines.failed;
    this.exited = this.lines.exited;
  }

  get pid(): number {
    return this.lines.pid;
  }

  /** Peak RSS (bytes) sampled every 200 ms by the child. */
  sampledPeakRss(): number {
    return this.peak;
  }

  /** VmHWM: the child's peak resident set since it started, read by the kernel's count. */
  peakRss(): number {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return match ? Number(match[1]) * 1024 : this.peak;
    } catch {
      return this.peak;
    }
  }

  /** The child's timers so far (bridge-timing.ts). */
  stats(): Promise<BridgeTimings> {
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve);
      this.lines.write("stats");
    });
  }

  stderr(): string {
    return this.lines.stderr();
  }

  /** SIGTERM (the bridge finishes its batches, commits, leaves), SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<number | null> {
    return this.lines.stop(graceMs);
  }

  async kill(): Promise<void> {
    await this.lines.kill();
  }
}

/** The bridge's own `postgres` and `kafkajs` imports → bridge-timing.ts (which imports the real ones). */
const timingPlugin: Plugin = {
  name: "bench-bridge-timing",
  setup(build) {
    build.onResolve({ filter: /^(postgres|kafkajs)$/ }, (args) => {
      if (args.importer === timingModule || args.importer === readerModule || args.importer.includes("/node_modules/")) return undefined;
      return { path: timingModule };
    });
  },
};

/** The bundled child; build once per benchmark run. */
export class BridgeLauncher {
  private constructor(private readonly bundle: ChildBundle) {}

  static async build(sources: { bridge?: string; client?: string } = {}): Promise<BridgeLauncher> {
    const { stop } = await import("esbuild");
    const alias: Record<string, string> = {};
    if (sources.bridge) alias["@tributary/kafka-bridge"] = sources.bridge;
    if (sources.client) alias["@tributary/client"] = sources.client;
    // Module markers in the bundle ("// services/kafka-bridge/src/…") are what bridge-profile.ts reads.
    const bundle = await ChildBundle.build({
      prefix: "tributary-bench-bridge-",
      entries: { "bridge-child": fileURLToPath(new URL("./bridge-child.ts", import.meta.url)), "bridge-reader-child": readerModule },
      plugins: [timingPlugin],
      alias,
    });
    await stop(); // esbuild's service process is not needed any more
    return new BridgeLauncher(bundle);
  }

  get script(): string {
    return this.bundle.script("bridge-child");
  }

  start(options: BridgeOptions): BridgeProcess {
    const child = spawnChild(this.script, {
      nodeArgs: options.nodeArgs,
      cpuProfileDir: options.cpuProfileDir,
      stdin: true,
      env: {
        DATABASE_URL: options.databaseUrl,
        BROKERS: options.brokers.join(","),
        STREAMS: options.streams.join(","),
        GROUP: options.group,
        TOPIC_PREFIX: options.topicPrefix ?? "",
        BATCH_SIZE: String(options.batchSize),
        CONCURRENCY: String(options.concurrency),
        ...(options.producers ? { PRODUCERS: String(options.producers) } : {}),
      },
    });
    return new BridgeProcess(child);
  }

  /** A kafkajs reader of `topic` in its own process (bridge-reader-child.ts). */
  startReader(brokers: readonly string[], topic: string, onRecords: (records: ReaderRecord[]) => void): ReaderProcess {
    const child = spawnChild(this.bundle.script("bridge-reader-child"), { env: { BROKERS: brokers.join(","), TOPIC: topic } });
    return new ReaderProcess(child, onRecords);
  }

  dispose(): void {
    this.bundle.dispose();
  }
}

export interface ReaderRecord {
  readonly id: string;
  /** The stream partition and offset (tributary- headers). */
  readonly partition: number;
  readonly offset: number;
  readonly committedMs: number;
  /** The record's timestamp: the broker's append time on a LogAppendTime topic. */
  readonly appendedMs: number;
  readonly receivedMs: number;
}

export class ReaderProcess {
  /** Resolves once the reader is in its group; rejects if it exits first. */
  readonly joined: Promise<void>;
  private readonly lines: ChildLines;

  constructor(child: ChildProcess, onRecords: (records: ReaderRecord[]) => void) {
    this.lines = new ChildLines(child, {
      label: "reader child",
      onLine: (tag, rest) => {
        if (tag === "records") onRecords(rest.split(";").map(parseRecord));
      },
    });
    this.joined = this.lines.once("joined", () => undefined);
  }

  async stop(graceMs = 5_000): Promise<void> {
    await this.lines.stop(graceMs);
  }
}

function parseRecord(text: string): ReaderRecord {
  const [id, partition, offset, committedMs, appendedMs, receivedMs] = text.split("|");
  return { id: id!, partition: Number(partition), offset: Number(offset), committedMs: Number(committedMs), appendedMs: Number(appendedMs), receivedMs: Number(receivedMs) };
}
