/**
 * A benchmark's child process as its driver follows it: stdout as
 * "tag rest" lines (an "error <message>" line is a failure), the last 8,000
 * characters of stderr for error messages, and its exit, which is a failure
 * too (also after stop(): race `failed`-style promises only while the child
 * should run). The bench's bridge, member and queue worker children speak it.
 */
import type { ChildProcess } from "node:child_process";

export class ChildLines {
  readonly exited: Promise<number | null>;
  private errors = "";

  constructor(
    private readonly child: ChildProcess,
    label: string,
    onLine: (tag: string, rest: string) => void,
    onFail: (error: Error) => void,
  ) {
    let buffer = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const space = line.indexOf(" ");
        const tag = space < 0 ? line : line.slice(0, space);
        const rest = line.slice(space + 1);
        if (tag === "error") onFail(new Error(`${label} ${child.pid}: ${rest}\n${this.errors}`));
        else onLine(tag, rest);
      }
    });
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.errors = (this.errors + chunk).slice(-8000)));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    void this.exited.then((code) => onFail(new Error(`${label} ${child.pid} exited (${code}): ${this.errors.trim()}`)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  stderr(): string {
    return this.errors;
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
}
