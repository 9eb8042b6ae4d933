/**
 * The relay under test, in its own OS process (test/support/relay-child.ts),
 * so its RSS and CPU are its own and not the benchmark driver's. It runs
 * plain JavaScript, as `tributary relay` does from the packages' compiled
 * output: the child and the workspace sources bundled by esbuild once per
 * benchmark run (ChildBundle, the fault tests' bundle). Runs before
 * 2026-12-02 ran the TypeScript sources under tsx, whose loader wraps every
 * named closure in a `__name` call (esbuild's keepNames): 3–4% of the relay's
 * CPU that no user pays. With `cpuProfileDir` it runs under `node --cpu-prof`;
 * the profile is written when the child exits after SIGTERM (a clean stop).
 */
import { fileURLToPath } from "node:url";
import { ChildBundle, ChildLines, cliHeapLimit, spawnChild } from "@tributary/testkit";

let bundle: ChildBundle | undefined;

/** The bundled relay child, built on first use and removed when this process exits. */
export function relayChildScript(): string {
  if (!bundle) {
    const built = ChildBundle.buildSync({
      entries: { relay: fileURLToPath(new URL("../../test/support/relay-child.ts", import.meta.url)) },
      prefix: "tributary-bench-relay-",
    });
    process.once("exit", () => built.dispose());
    bundle = built;
  }
  return bundle.script("relay");
}

export interface RelayProcessOptions {
  readonly databaseUrl: string;
  readonly slotName: string;
  readonly maxBatchEvents?: number;
  /** Rows per snapshot chunk of a captured table (default: the relay's, 2000). */
  readonly snapshotChunkRows?: number;
  /** Node flags (default: `tributary relay`'s heap limit, cliHeapLimit; e.g. --import ./preload.mjs). */
  readonly nodeArgs?: readonly string[];
  readonly cpuProfileDir?: string;
  /** Register the relay's metrics and serve them over HTTP (see `metricsUrl`). */
  readonly metrics?: boolean;
}

export interface GcPauses {
  readonly scavengeMs: number;
  readonly scavenges: number;
  /** Mark-compact and incremental marking steps. */
  readonly otherMs: number;
  readonly others: number;
}

export interface RelayProcess {
  readonly pid: number;
  /** performance.now() when the child printed "active" (it leads and starts streaming). */
  readonly active: Promise<number>;
  /** The child's /metrics URL (with `metrics`), printed before the relay starts. */
  readonly metricsUrl: Promise<string>;
  /** Peak RSS (bytes) reported so far; the child reports every 200 ms. */
  peakRss(): number;
  /** Resets the peak (to measure one phase). */
  resetPeakRss(): void;
  /** The relay's GC pauses since it became active, as last reported (every 200 ms). */
  gc(): GcPauses;
  /** SIGTERM, then waits for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
  stderr(): string;
}

export function startRelayProcess(options: RelayProcessOptions): RelayProcess {
  const child = spawnChild(relayChildScript(), {
    nodeArgs: [...(options.nodeArgs ?? [cliHeapLimit])],
    cpuProfileDir: options.cpuProfileDir,
    env: {
      DATABASE_URL: options.databaseUrl,
      SLOT: options.slotName,
      MAX_BATCH_EVENTS: String(options.maxBatchEvents ?? 5000),
      REPORT_RSS: "1",
      ...(options.metrics ? { METRICS: "1" } : {}),
      ...(options.snapshotChunkRows !== undefined ? { SNAPSHOT_CHUNK_ROWS: String(options.snapshotChunkRows) } : {}),
    },
  });
  let peak = 0;
  let gc: GcPauses = { scavengeMs: 0, scavenges: 0, otherMs: 0, others: 0 };
  const lines = new ChildLines(child, {
    label: "relay child",
    onLine: (tag, rest) => {
      if (tag === "rss") peak = Math.max(peak, Number(rest));
      if (tag === "gc") {
        const [scavengeMs, scavenges, otherMs, others] = rest.split(" ").map(Number);
        gc = { scavengeMs: scavengeMs!, scavenges: scavenges!, otherMs: otherMs!, others: others! };
      }
    },
  });
  return {
    pid: lines.pid,
    active: lines.once("active", () => performance.now()),
    metricsUrl: lines.once("metrics"),
    peakRss: () => peak,
    gc: () => gc,
    resetPeakRss: () => {
      peak = 0;
    },
    stop: (graceMs = 15_000) => lines.stop(graceMs),
    stderr: () => lines.stderr(),
  };
}
