/**
 * The relay under test, in its own OS process (test/support/relay-child.ts),
 * so its RSS and CPU are its own and not the benchmark driver's. With
 * `cpuProfileDir` it runs under `node --cpu-prof`; the profile is written when
 * the child exits after SIGTERM (a clean stop).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const childScript = fileURLToPath(new URL("../../test/support/relay-child.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export interface RelayProcessOptions {
  readonly databaseUrl: string;
  readonly slotName: string;
  readonly maxBatchEvents?: number;
  /** Extra node flags (e.g. --max-old-space-size=128, --import ./preload.mjs). */
  readonly nodeArgs?: readonly string[];
  readonly cpuProfileDir?: string;
}

export interface RelayProcess {
  readonly pid: number;
  /** performance.now() when the child printed "active" (it leads and starts streaming). */
  readonly active: Promise<number>;
  /** Peak RSS (bytes) reported so far; the child reports every 200 ms. */
  peakRss(): number;
  /** Resets the peak (to measure one phase). */
  resetPeakRss(): void;
  /** SIGTERM, then waits for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
  stderr(): string;
}

export function startRelayProcess(options: RelayProcessOptions): RelayProcess {
  const nodeArgs = [
    ...(options.nodeArgs ?? []),
    ...(options.cpuProfileDir ? ["--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir] : []),
  ];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, "--conditions=@tributary/source", "--import", "tsx", childScript], {
    cwd: repoRoot,
    env: {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      SLOT: options.slotName,
      MAX_BATCH_EVENTS: String(options.maxBatchEvents ?? 5000),
      REPORT_RSS: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let peak = 0;
  let errors = "";
  let lineBuffer = "";
  let markActive: (at: number) => void = () => {};
  let failActive: (error: Error) => void = () => {};
  const active = new Promise<number>((resolve, reject) => {
    markActive = resolve;
    failActive = reject;
  });
  child.stdout!.on("data", (chunk: Buffer) => {
    lineBuffer += chunk.toString();
    for (let nl = lineBuffer.indexOf("\n"); nl >= 0; nl = lineBuffer.indexOf("\n")) {
      const line = lineBuffer.slice(0, nl);
      lineBuffer = lineBuffer.slice(nl + 1);
      if (line === "active") markActive(performance.now());
      else if (line.startsWith("rss ")) peak = Math.max(peak, Number(line.slice(4)));
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-8000)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  void exited.then((code) => failActive(new Error(`relay child exited (${code}) before it was active: ${errors.trim()}`)));
  return {
    pid: child.pid!,
    active,
    peakRss: () => peak,
    resetPeakRss: () => {
      peak = 0;
    },
    stop: async (graceMs = 15_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    stderr: () => errors,
  };
}
