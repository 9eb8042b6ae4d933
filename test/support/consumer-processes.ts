/**
 * Consumer group members in their own processes (test/support/consumer-child.ts),
 * to kill -9, SIGSTOP and restart. The fixture is bundled once per test file.
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

export class ConsumerChild {
  joined = false;
  exited = false;
  private stderr = "";
  readonly exit: Promise<void>;

  constructor(readonly process: ChildProcess, readonly label: string) {
    process.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      if (chunk.includes("joined")) this.joined = true;
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

export class ConsumerChildren {
  private readonly running = new Set<ConsumerChild>();

  private constructor(private readonly dir: string, private readonly script: string) {}

  static async build(): Promise<ConsumerChildren> {
    const { dir, script } = await bundleFixture(new URL("./consumer-child.ts", import.meta.url));
    return new ConsumerChildren(dir, script);
  }

  start(options: ConsumerChildOptions): ConsumerChild {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      GROUP: options.group,
      STREAMS: options.streams.join(","),
      LABEL: options.label,
      MODE: options.mode ?? "log",
      SESSION_TIMEOUT_MS: String(options.sessionTimeoutMs ?? 2_000),
      BATCH_SIZE: String(options.batchSize ?? 50),
    };
    const child = new ConsumerChild(spawn(process.execPath, [this.script], { env, stdio: ["ignore", "pipe", "pipe"] }), options.label);
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
