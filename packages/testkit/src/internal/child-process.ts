/**
 * Child processes for tests and benchmarks (relays, consumer group members,
 * bridges, queue workers): bundled, spawned, followed through their stdout
 * and stopped, the same way for both.
 *
 * A bundle (`ChildBundle`) is one ESM file per entry point, built by esbuild
 * into a temp folder. A child then starts in ~0.3 s instead of ~2 s under
 * tsx (which is what makes crash loops affordable) and runs plain
 * JavaScript, with no loader in its process. The bundle takes the workspace
 * packages' TypeScript sources (the "@tributary/source" condition of their
 * package.json exports), lets CommonJS dependencies call require() inside
 * it, and writes its module markers ("// packages/client/src/…") relative to
 * the repository root, which the benchmarks' CPU profile summaries read.
 *
 * A child's stdout (`ChildLines`) is "tag rest" lines: "error <message>" is
 * a failure, so is the child's exit (also after stop(): race `failed` only
 * while the child should run). The last characters of its stderr go into
 * failure messages. stop() is SIGTERM (the child finishes what it does and
 * exits, writing its CPU profile if it has one), then SIGKILL after a grace
 * period.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import type { BuildOptions, Plugin } from "esbuild";

/** The repository's root folder (bundles resolve and name their modules from here). */
export const repositoryRoot = fileURLToPath(new URL("../../../..", import.meta.url));

/**
 * The V8 heap limit every `tributary` command runs with (the node flag in
 * apps/cli/bin/tributary.js), for children that stand in for `tributary
 * relay` or `tributary bridge`.
 */
export const cliHeapLimit = "--max-old-space-size=128";

export interface ChildBundleOptions {
  /** Script name (the bundle writes `<name>.mjs`) → the entry module's path. */
  readonly entries: Readonly<Record<string, string>>;
  /** Imports to resolve to other files, e.g. `@tributary/client` → another copy's src/index.ts (a proposed change). */
  readonly alias?: Readonly<Record<string, string>>;
  /** Modules left out of the bundle (pg-native always is). */
  readonly external?: readonly string[];
  readonly plugins?: readonly Plugin[];
  /** Prefix of the temp folder's name. */
  readonly prefix?: string;
}

/** Child scripts bundled into a temp folder; dispose() removes it. */
export class ChildBundle {
  private constructor(readonly dir: string) {}

  static async build(options: ChildBundleOptions): Promise<ChildBundle> {
    const { build } = await import("esbuild");
    const dir = ChildBundle.tempDir(options);
    await build(buildOptions(options, dir)).catch((error: unknown) => ChildBundle.discard(dir, error));
    return new ChildBundle(dir);
  }

  /** build(), synchronously (esbuild's buildSync: no plugins), for callers that cannot await, e.g. a benchmark's process starter. */
  static buildSync(options: ChildBundleOptions): ChildBundle {
    if (options.plugins?.length) throw new Error("ChildBundle.buildSync: esbuild runs plugins only in build(); use ChildBundle.build");
    const dir = ChildBundle.tempDir(options);
    try {
      esbuildSync().buildSync(buildOptions(options, dir));
    } catch (error) {
      ChildBundle.discard(dir, error);
    }
    return new ChildBundle(dir);
  }

  private static tempDir(options: ChildBundleOptions): string {
    return mkdtempSync(join(tmpdir(), options.prefix ?? "tributary-child-"));
  }

  /** A failed build leaves no folder behind. */
  private static discard(dir: string, error: unknown): never {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  /** The bundled script of the entry `name`. */
  script(name: string): string {
    return join(this.dir, `${name}.mjs`);
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function buildOptions(options: ChildBundleOptions, dir: string): BuildOptions {
  const alias = options.alias ?? {};
  return {
    entryPoints: { ...options.entries },
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    conditions: ["@tributary/source"],
    // CommonJS dependencies (pg, kafkajs) call require() inside the ESM bundle.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: "error",
    absWorkingDir: repositoryRoot,
    external: ["pg-native", ...(options.external ?? [])],
    plugins: [...(options.plugins ?? [])],
    // An aliased copy outside the repository still finds the repository's dependencies.
    ...(Object.keys(alias).length > 0 ? { alias: { ...alias }, nodePaths: [join(repositoryRoot, "node_modules")] } : {}),
  };
}

/** esbuild, loaded on first use (a dev dependency: only tests and benchmarks bundle). */
function esbuildSync(): typeof import("esbuild") {
  return createRequire(import.meta.url)("esbuild") as typeof import("esbuild");
}

export interface ChildSpawnOptions {
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Node flags, e.g. `cliHeapLimit`. */
  readonly nodeArgs?: readonly string[];
  /** Runs under `node --cpu-prof`: the profile lands here when the child exits cleanly (after SIGTERM). */
  readonly cpuProfileDir?: string;
  /** A pipe to the child's stdin (for children that read commands); otherwise stdin is closed. */
  readonly stdin?: boolean;
  readonly cwd?: string;
}

/** `node [flags] script`, stdout and stderr piped (follow them with ChildLines). */
export function spawnChild(script: string, options: ChildSpawnOptions = {}): ChildProcess {
  const profile = options.cpuProfileDir ? ["--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir] : [];
  return spawn(process.execPath, [...(options.nodeArgs ?? []), ...profile, script], {
    env: { ...process.env, ...options.env },
    stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}

export interface ChildLinesOptions {
  /** Names the child in failure messages ("consumer child 1234: …"). */
  readonly label: string;
  /** Every stdout line but "error" ones, split at its first space (`rest` is the whole line when it has none). */
  readonly onLine?: (tag: string, rest: string) => void;
  /** How much of the end of stderr to keep (default 8,000 characters). */
  readonly stderrChars?: number;
}

interface LineWaiter {
  readonly tag: string;
  readonly take: (rest: string) => void;
  readonly fail: (error: Error) => void;
}

/** A child process as its driver follows it: its stdout lines, its stderr, its failure and its exit. */
export class ChildLines {
  readonly exited: Promise<number | null>;
  /** Rejects with the child's first failure: an "error" line or its exit. */
  readonly failed: Promise<never>;
  private errors = "";
  private firstFailure: Error | null = null;
  private waiters: LineWaiter[] = [];
  private rejectFailed: (error: Error) => void = () => {};

  constructor(
    private readonly child: ChildProcess,
    private readonly options: ChildLinesOptions,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => undefined);
    const keep = options.stderrChars ?? 8000;
    let buffer = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const space = line.indexOf(" ");
        const tag = space < 0 ? line : line.slice(0, space);
        const rest = line.slice(space + 1);
        if (tag === "error") this.fail(new Error(`${options.label} ${child.pid}: ${rest}\n${this.errors}`));
        else this.deliver(tag, rest);
      }
    });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.errors = (this.errors + chunk).slice(-keep)));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    void this.exited.then((code) => this.fail(new Error(`${options.label} ${child.pid} exited (${code}): ${this.errors.trim()}`)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The child's first failure so far, if any. */
  failure(): Error | null {
    return this.firstFailure;
  }

  stderr(): string {
    return this.errors;
  }

  /**
   * The next line tagged `tag` (a ready line: "joined", "active", …), its
   * rest read by `read` as the line arrives; rejects if the child fails
   * first. Left unawaited, a rejection is no unhandled rejection.
   */
  once<T = string>(tag: string, read: (rest: string) => T = (rest) => rest as T): Promise<T> {
    const next = new Promise<T>((resolve, reject) => {
      if (this.firstFailure) return reject(this.firstFailure);
      this.waiters.push({ tag, take: (rest) => resolve(read(rest)), fail: reject });
    });
    next.catch(() => undefined);
    return next;
  }

  /** A line on the child's stdin (started with `stdin: true`). */
  write(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** SIGTERM (the child finishes what it does and exits), SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** kill -9, now. Resolves when the process is gone. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }

  private deliver(tag: string, rest: string): void {
    const taken = this.waiters.filter((w) => w.tag === tag);
    if (taken.length > 0) this.waiters = this.waiters.filter((w) => w.tag !== tag);
    for (const waiter of taken) {
      try {
        waiter.take(rest);
      } catch (error) {
        waiter.fail(error as Error);
      }
    }
    this.options.onLine?.(tag, rest);
  }

  private fail(error: Error): void {
    this.firstFailure ??= error;
    this.rejectFailed(error);
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) waiter.fail(error);
  }
}
