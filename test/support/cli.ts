/**
 * The `tributary` CLI as a user runs it, from the repository root
 * (apps/cli/bin/tributary.js), without DATABASE_URL unless a test
 * gives one. Children still running when a test ends are killed by
 * killCliChildren() (call it in afterEach).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const bin = "apps/cli/bin/tributary.js";

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** The environment of a user who has not set DATABASE_URL, plus `env`. */
export function cliEnvironment(env: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _unset, ...rest } = process.env;
  return { ...rest, ...env };
}

export function startCli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: repoRoot, env: cliEnvironment(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const output = { stdout: "", stderr: "" };
  child.stdout!.on("data", (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<CliRun>((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      setImmediate(() => resolve({ code, signal, ...output })); // let the pipes drain
    });
  });
  return { child, output, exited };
}

/** Runs the CLI to its exit (SIGKILL after `timeoutMs`). */
export async function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliRun> {
  const { child, exited } = startCli(args, env);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

export function killCliChildren(): void {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
}
