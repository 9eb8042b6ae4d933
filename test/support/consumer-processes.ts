/**
 * Fixtures in their own processes, to kill -9, SIGSTOP and restart:
 * consumer group members (test/support/consumer-child.ts) and Kafka bridges
 * (test/support/bridge-child.ts). Each fixture is bundled once per test file;
 * a child prints a ready line ("joined", "forwarding") on stdout.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { bundleFixture, eventually } from "./processes.ts";

export interface ConsumerChildOptions {
  readonly databaseUrl: string;
  readonly group: string;
  readonly streams: readonly string[];
  readonly label: string;
  readonly mode?: "log" | "transactional";
  readonly sessionTimeoutMs?: number;
  readonly batchSize?: number;
}

export class FixtureChild {
  joined = false;
  exited = false;
  private stderr = "";
  readonly exit: Promise<void>;

  constructor(readonly process: ChildProcess, readonly label: string, readyLine = "joined") {
    process.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      if (chunk.includes(readyLine)) this.joined = true;
    });
    process.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-20_000);
    });
    this.exit = new Promise((resolve) => process.once("exit", () => {
      this.exited = true;
      resolve();
    }));
  }

  log(): string {
    return this.stderr;
  }

  async waitJoined(timeoutMs = 20_000): Promise<void> {
    await eventually(`consumer ${this.label} to join`, () => {
      if (this.exited) throw new Error(`consumer ${this.label} exited; its log:\n${this.stderr}`);
      return this.joined;
    }, timeoutMs);
  }

  async kill(): Promise<void> {
    if (!this.exited) this.process.kill("SIGKILL");
    await this.exit;
  }

  pause(): void {
    this.process.kill("SIGSTOP");
  }

  resume(): void {
    this.process.kill("SIGCONT");
  }
}

export type ConsumerChild = FixtureChild;

/** Children of one bundled fixture script. */
export class Fixture {
  private readonly running = new Set<FixtureChild>();

  private constructor(private readonly dir: string, private readonly script: string, private readonly readyLine: string) {}

  static async build(entry: URL, readyLine: string): Promise<Fixture> {
    const { dir, script } = await bundleFixture(entry);
    return new Fixture(dir, script, readyLine);
  }

  start(label: string, env: Record<string, string>): FixtureChild {
    const child = new FixtureChild(spawn(process.execPath, [this.script], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] }), label, this.readyLine);
    this.running.add(child);
    void child.exit.then(() => this.running.delete(child));
    return child;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.running].map((c) => {
      c.resume();
      return c.kill();
    }));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class ConsumerChildren {
  private constructor(private readonly fixture: Fixture) {}

  static async build(): Promise<ConsumerChildren> {
    return new ConsumerChildren(await Fixture.build(new URL("./consumer-child.ts", import.meta.url), "joined"));
  }

  start(options: ConsumerChildOptions): ConsumerChild {
    return this.fixture.start(options.label, {
      DATABASE_URL: options.databaseUrl,
      GROUP: options.group,
      STREAMS: options.streams.join(","),
      LABEL: options.label,
      MODE: options.mode ?? "log",
      SESSION_TIMEOUT_MS: String(options.sessionTimeoutMs ?? 2_000),
      BATCH_SIZE: String(options.batchSize ?? 50),
    });
  }

  dispose(): Promise<void> {
    return this.fixture.dispose();
  }
}
