/**
 * `--wait` of `tributary capture add` and `capture backfill`: follows one
 * snapshot request until the relay has read every row, polling
 * tributary.table_captures (the relay writes rows_done with each chunk's
 * batch; no notification says so).
 *
 * The request is the capture and the time it was asked: a backfill asked
 * since starts the snapshot over (its cursor and rows_done reset), so the
 * one followed ends as "superseded". A capture that stops (uncaptured, its
 * table dropped) ends the wait as "stopped". Both exit 1: the rows asked
 * for were not all read.
 *
 * Output: for people, one line on stderr rewritten in place on a terminal
 * (off a terminal, a line per state and at most one every 10 s), then "done"
 * on stdout; with --json, one JSON object per change on stdout. The pure
 * part (snapshotProgress, progressText, progressPrinter) is apart from the
 * polling loop (followSnapshot) and tested alone.
 */
import type { Sql } from "postgres";
import { readSnapshot, type SnapshotRequest, type SnapshotRow } from "./capture-query.ts";

/** How often the loop reads the capture's row. */
export const PROGRESS_POLL_MS = 500;
/** Off a terminal, the least time between two progress lines for people. */
const PLAIN_LINE_EVERY_MS = 10_000;

export type ProgressState = "waiting" | "snapshotting" | "done" | "stopped" | "superseded";

/** One line of --wait --json. */
export interface SnapshotProgress {
  table: string;
  stream: string;
  captureId: number;
  /**
   * waiting: no relay has started reading it yet; snapshotting: rowsDone read
   * so far; done: every row read; stopped: the capture ended first
   * (stopReason); superseded: a backfill asked since started it over.
   */
  state: ProgressState;
  rowsDone: number;
  /** The planner's estimate of the table's rows when the snapshot was asked (0 for a table never analyzed). */
  rowsEstimated: number | null;
  /** rowsDone of rowsEstimated, below 100 until done; null without an estimate or with a filter (the estimate is the whole table's). */
  percent: number | null;
  /** The backfill's WHERE condition; null for every row. */
  filter: string | null;
  stopReason: string | null;
  /** While waiting: whether a relay is running on the database at all. */
  relayActive: boolean;
}

/**
 * Rows read of the estimate as a percentage, below 100 (the estimate is the
 * planner's: a snapshot may read more rows than it): null without an
 * estimate, or with a filter, whose rows the estimate does not count.
 */
export function snapshotPercent(rowsDone: number, rowsEstimated: number | null, filter: string | null): number | null {
  if (filter !== null || rowsEstimated === null || rowsEstimated <= 0) return null;
  return Math.min(99, Math.floor((rowsDone * 100) / rowsEstimated));
}

/** A snapshot in progress in a table cell: "1500/~3000 (50%)", or "1500" without a percentage. */
export function snapshotCell(rowsDone: number, rowsEstimated: number | null, filter: string | null): string {
  const percent = snapshotPercent(rowsDone, rowsEstimated, filter);
  return percent === null ? `${rowsDone}` : `${rowsDone}/~${rowsEstimated} (${percent}%)`;
}

/**
 * What a row of table_captures says about `request`. Once a backfill asked
 * since has reset the row, its counts are that backfill's: a superseded
 * request keeps the counts last seen of it (`last`).
 */
export function snapshotProgress(request: SnapshotRequest, row: SnapshotRow, last: SnapshotProgress | null = null): SnapshotProgress {
  const base = { table: request.table, stream: request.stream, captureId: request.captureId };
  if (!row.stopped && row.requestedAt !== request.requestedAt) {
    return {
      ...base, state: "superseded", rowsDone: last?.rowsDone ?? 0, rowsEstimated: last?.rowsEstimated ?? null, percent: last?.percent ?? null,
      filter: request.filter, stopReason: null, relayActive: row.relayActive,
    };
  }
  const state: ProgressState = row.stopped ? "stopped" : row.snapshotState === "done" ? "done" : row.snapshotState === "running" ? "snapshotting" : "waiting";
  return {
    ...base,
    state,
    rowsDone: row.rowsDone,
    rowsEstimated: row.rowsEstimated,
    percent: state === "done" && row.filter === null ? 100 : snapshotPercent(row.rowsDone, row.rowsEstimated, row.filter),
    filter: row.filter,
    stopReason: row.stopReason,
    relayActive: row.relayActive,
  };
}

/**
 * The progress as one line for people; `what` is "snapshot" or "backfill";
 * `elapsedMs` the time it was followed, null if it was over when first read.
 */
export function progressText(what: string, p: SnapshotProgress, elapsedMs: number | null): string {
  const head = `${what} of ${p.table}${p.filter === null ? "" : ` (where ${p.filter})`}`;
  const rows = `${p.rowsDone} row${p.rowsDone === 1 ? "" : "s"}`;
  const estimate = p.rowsEstimated !== null && p.rowsEstimated > 0 ? p.rowsEstimated : null;
  switch (p.state) {
    case "waiting":
      return `${head}: waiting for the relay to start it${p.relayActive ? "" : " (no relay is running on this database: start tributary relay)"}`;
    case "snapshotting":
      if (p.percent !== null) return `${head}: ${p.rowsDone} of ~${estimate} rows (${p.percent}%)`;
      return `${head}: ${rows} read${estimate !== null && p.filter !== null ? ` (the table has ~${estimate})` : ""}`;
    case "done":
      return `${head}: done, ${rows} into stream '${p.stream}'${elapsedMs === null ? "" : ` in ${(elapsedMs / 1000).toFixed(1)} s`}`;
    case "stopped":
      return `${head}: the capture stopped (${p.stopReason ?? "no reason given"}) before every row was read`;
    case "superseded":
      return `${head}: a backfill asked since started it over (tributary capture list shows that one's progress)`;
  }
}

export interface ProgressOutput {
  readonly json: boolean;
  /** stderr is a terminal: one line rewritten in place. */
  readonly tty: boolean;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly now: () => number;
}

/** Prints each progress as `output` says (show), and the last one (end). */
export function progressPrinter(what: string, output: ProgressOutput) {
  const started = output.now();
  let last: string | null = null;
  let followed = false;
  let lastPlainAt = -Infinity;
  let lastPlainState: ProgressState | null = null;
  return {
    show(p: SnapshotProgress): void {
      const key = JSON.stringify(p);
      if (key === last) return;
      last = key;
      if (output.json) return output.stdout(key + "\n");
      if (p.state === "done" || p.state === "stopped" || p.state === "superseded") return;
      followed = true;
      const text = progressText(what, p, output.now() - started);
      if (output.tty) return output.stderr(`\r\x1b[2K${text}`);
      if (p.state !== lastPlainState || output.now() - lastPlainAt >= PLAIN_LINE_EVERY_MS) {
        lastPlainAt = output.now();
        lastPlainState = p.state;
        output.stderr(text + "\n");
      }
    },
    /**
     * The last progress. For people, the terminal's live line is cleared, and
     * "done" goes to stdout; a snapshot that did not finish is the caller's
     * error to report (its progressText).
     */
    end(p: SnapshotProgress): void {
      if (output.json) return;
      if (output.tty && followed) output.stderr("\r\x1b[2K");
      if (p.state === "done") output.stdout(progressText(what, p, followed ? output.now() - started : null) + "\n");
    },
  };
}

/**
 * Polls until the request is done, stopped or superseded, or `signal` aborts
 * (then null: the snapshot goes on in the relay). Returns the last progress.
 */
export async function followSnapshot(
  sql: Sql,
  request: SnapshotRequest,
  printer: ReturnType<typeof progressPrinter>,
  signal: AbortSignal,
): Promise<SnapshotProgress | null> {
  let last: SnapshotProgress | null = null;
  while (!signal.aborted) {
    const progress: SnapshotProgress = snapshotProgress(request, await readSnapshot(sql, request.captureId), last);
    last = progress;
    printer.show(progress);
    if (progress.state === "done" || progress.state === "stopped" || progress.state === "superseded") {
      printer.end(progress);
      return progress;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, PROGRESS_POLL_MS);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done);
    });
  }
  return null;
}
