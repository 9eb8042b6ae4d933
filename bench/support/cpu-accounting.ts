/**
 * CPU seconds from /proc, so a benchmark can say who used the two cores
 * during a phase: the PostgreSQL server (postmaster + every backend, live or
 * exited), this driver and its child processes (relay, pg_recvlogical), and
 * everything else on the machine (other people's tests: the "load").
 *
 * Linux only. Exited children count because the kernel adds a reaped child's
 * time to its parent's cutime/cstime, and the postmaster reaps its backends.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

interface ProcTimes {
  readonly ppid: number;
  /** utime + stime, seconds. */
  readonly own: number;
  /** cutime + cstime (reaped children), seconds. */
  readonly reaped: number;
}

function readProcTimes(pid: number): ProcTimes | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const field = (n: number) => Number(fields[n - 3]); // n is the 1-based field number of proc(5)
  return { ppid: field(4), own: (field(14) + field(15)) / ticksPerSecond, reaped: (field(16) + field(17)) / ticksPerSecond };
}

/** CPU seconds used so far by one process (not its children), or null once it is gone. */
export function processCpuSeconds(pid: number): number | null {
  return readProcTimes(pid)?.own ?? null;
}

/** CPU seconds of this process's children that have exited and been reaped (e.g. a finished pg_recvlogical). */
export function reapedChildrenCpuSeconds(): number {
  return readProcTimes(process.pid)?.reaped ?? 0;
}

function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    if (readProcTimes(pid)?.ppid === ppid) pids.push(pid);
  }
  return pids;
}

/** A process and all its children: own time + reaped children + live children (one level, enough here). */
function treeCpuSeconds(pid: number): number {
  const root = readProcTimes(pid);
  if (!root) return 0;
  let total = root.own + root.reaped;
  for (const child of childrenOf(pid)) {
    const t = readProcTimes(child);
    if (t) total += t.own + t.reaped;
  }
  return total;
}

function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [, ...values] = line.trim().split(/\s+/);
  const n = values.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (n[3] ?? 0) + (n[4] ?? 0); // idle + iowait
  return { busy: (total - idle) / ticksPerSecond, total: total / ticksPerSecond };
}

export interface CpuSnapshot {
  readonly at: number;
  readonly server: number;
  readonly driver: number;
  readonly machineBusy: number;
}

export function cpuSnapshot(postmasterPid: number): CpuSnapshot {
  return {
    at: performance.now(),
    server: treeCpuSeconds(postmasterPid),
    driver: treeCpuSeconds(process.pid),
    machineBusy: machineCpuSeconds().busy,
  };
}

export interface CpuUse {
  readonly wallSeconds: number;
  /** CPU seconds of the PostgreSQL server (all its processes). */
  readonly server: number;
  /** CPU seconds of this driver and its children (relay, pg_recvlogical). */
  readonly driver: number;
  /** CPU seconds of everything else on the machine. */
  readonly others: number;
}

export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
  const server = after.server - before.server;
  const driver = after.driver - before.driver;
  const busy = after.machineBusy - before.machineBusy;
  return { wallSeconds: (after.at - before.at) / 1000, server, driver, others: Math.max(0, busy - server - driver) };
}

/** "server 1.62, bench+relay 0.91, others 0.05 cores" */
export function describeCpu(use: CpuUse): string {
  const cores = (s: number) => (s / use.wallSeconds).toFixed(2);
  return `server ${cores(use.server)}, bench+children ${cores(use.driver)}, others ${cores(use.others)} cores`;
}

export function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}
