/** Starting test/support/relay-child.ts as a separate OS process. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const childScript = fileURLToPath(new URL("./relay-child.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export interface RelayProcess {
  readonly child: ChildProcess;
  /** Peak RSS seen so far (bytes), when started with reportRss. */
  peakRss(): number;
  /** Resolves when the child printed "active". */
  readonly active: Promise<void>;
  /** Resolves with the exit code or signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnRelay(env: Record<string, string>, options: { reportRss?: boolean; nodeArgs?: string[] } = {}): RelayProcess {
  // The same V8 heap limit as packages/cli/bin/tributary.js sets for `tributary relay`.
  const nodeArgs = options.nodeArgs ?? ["--max-old-space-size=128"];
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", childScript], {
    cwd: repoRoot,
    env: { ...process.env, ...env, ...(options.reportRss ? { REPORT_RSS: "1" } : {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let peak = 0;
  let errors = "";
  let markActive: () => void = () => {};
  const active = new Promise<void>((resolve) => (markActive = resolve));
  let buffered = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line === "active") markActive();
      else if (line.startsWith("rss ")) peak = Math.max(peak, Number(line.slice(4)));
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-20_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    peakRss: () => peak,
    active,
    exited,
    stderr: () => errors,
    kill: (signal = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}
