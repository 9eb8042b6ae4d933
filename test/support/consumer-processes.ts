/**
 * Fixtures in their own processes, to kill -9, SIGSTOP and restart:
 * consumer group members (test/support/consumer-child.ts) and Kafka bridges
 * (test/support/bridge-child.ts). Each fixture is bundled once per test file;
 * a child prints a ready line ("joined", "forwarding") on stdout. Bundling,
 * spawning and following a child is the testkit's (ChildBundle, spawnChild,
 * ChildLines), as for the benchmarks' children.
 */
import type { ChildProcess } from "node:child_process";
import { ChildLines, spawnChild, type ChildBundle } from "@tributary/testkit";
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
  readonly exit: Promise<void>;
  private readonly lines: ChildLines;

  constructor(readonly process: ChildProcess, readonly label: string, readyLine = "joined") {
    this.lines = new ChildLines(process, {
      label,
      stderrChars: 20_000,
      onLine: (tag) => {
        if (tag === readyLine) this.joined = true;
      },
    });
    this.exit = this.lines.exited.then(() => {
      this.exited = true;
    });
  }

  log(): string {
    return this.lines.stderr();
  }

  async waitJoined(timeoutMs = 20_000): Promise<void> {
    await eventually(`consumer ${this.label} to join`, () => {
      if (this.exited) throw new Error(`consumer ${this.label} exited; its log:\n${this.log()}`);
      return this.joined;
    }, timeoutMs);
  }

  kill(): Promise<void> {
    return this.lines.kill();
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

  private constructor(private readonly bundle: ChildBundle, private readonly readyLine: string) {}

  static async build(entry: URL, readyLine: string): Promise<Fixture> {
    return new Fixture(await bundleFixture(entry), readyLine);
  }

  start(label: string, env: Record<string, string>): FixtureChild {
    const child = new FixtureChild(spawnChild(this.bundle.script("child"), { env }), label, this.readyLine);
    this.running.add(child);
    void child.exit.then(() => this.running.delete(child));
    return child;
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.running].map((c) => {
      c.resume();
      return c.kill();
    }));
    this.bundle.dispose();
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
