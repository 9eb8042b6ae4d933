import { describe, expect, it } from "vitest";
import type { SnapshotRequest, SnapshotRow } from "./capture-query.ts";
import { progressPrinter, progressText, snapshotCell, snapshotProgress } from "./capture-progress.ts";

const request: SnapshotRequest = { table: "public.items", stream: "public.items", captureId: 7, requestedAt: "2026-01-31 12:00:00.123456+00", filter: null };
const row = (over: Partial<SnapshotRow>): SnapshotRow => ({
  snapshotState: "running", requestedAt: request.requestedAt, rowsDone: 0, rowsEstimated: 3000, filter: null, stopReason: null, stopped: false, relayActive: true,
  ...over,
});

describe("a snapshot's progress", () => {
  it("says which state the request is in, by the row the relay leaves", () => {
    expect(snapshotProgress(request, row({ snapshotState: "pending", relayActive: false }))).toMatchObject({ state: "waiting", percent: 0, relayActive: false });
    expect(snapshotProgress(request, row({ rowsDone: 1500 }))).toMatchObject({ state: "snapshotting", rowsDone: 1500, rowsEstimated: 3000, percent: 50 });
    expect(snapshotProgress(request, row({ snapshotState: "done", rowsDone: 2990 }))).toMatchObject({ state: "done", percent: 100 });
    // A backfill asked since reset the row: its counts are not the request's, the last seen of it are.
    const since = row({ snapshotState: "running", requestedAt: "2026-01-31 12:00:05+00", rowsDone: 10, filter: "id > 5" });
    const seen = snapshotProgress(request, row({ rowsDone: 1500 }));
    expect(snapshotProgress(request, since, seen)).toEqual({ ...seen, state: "superseded" });
    expect(snapshotProgress(request, since)).toMatchObject({ state: "superseded", rowsDone: 0, rowsEstimated: null, percent: null, filter: null });
    expect(snapshotProgress(request, row({ stopped: true, stopReason: "table dropped" }))).toMatchObject({ state: "stopped", stopReason: "table dropped" });
  });

  it("keeps the percentage under 100 until done, and gives none without an estimate or with a filter", () => {
    expect(snapshotProgress(request, row({ rowsDone: 3500 })).percent).toBe(99);
    expect(snapshotProgress(request, row({ rowsEstimated: 0, rowsDone: 10 })).percent).toBeNull();
    expect(snapshotProgress(request, row({ filter: "id > 5", rowsDone: 10 })).percent).toBeNull();
    expect(snapshotProgress(request, row({ filter: "id > 5", snapshotState: "done" })).percent).toBeNull();
    expect(snapshotCell(1500, 3000, null)).toBe("1500/~3000 (50%)");
    expect(snapshotCell(1500, 0, null)).toBe("1500");
  });

  it("reads as one line for people", () => {
    const text = (over: Partial<SnapshotRow>, elapsed: number | null = 2345) => progressText("snapshot", snapshotProgress(request, row(over)), elapsed);
    expect(text({ snapshotState: "pending", relayActive: false })).toBe(
      "snapshot of public.items: waiting for the relay to start it (no relay is running on this database: start tributary relay)");
    expect(text({ snapshotState: "pending" })).toBe("snapshot of public.items: waiting for the relay to start it");
    expect(text({ rowsDone: 1500 })).toBe("snapshot of public.items: 1500 of ~3000 rows (50%)");
    expect(text({ rowsDone: 1, rowsEstimated: 0 })).toBe("snapshot of public.items: 1 row read");
    expect(progressText("backfill", snapshotProgress(request, row({ rowsDone: 40, filter: "id > 5" })), 0))
      .toBe("backfill of public.items (where id > 5): 40 rows read (the table has ~3000)");
    expect(text({ snapshotState: "done", rowsDone: 3000 })).toBe("snapshot of public.items: done, 3000 rows into stream 'public.items' in 2.3 s");
    expect(text({ snapshotState: "done", rowsDone: 3000 }, null)).toBe("snapshot of public.items: done, 3000 rows into stream 'public.items'");
    expect(text({ stopped: true, stopReason: "uncaptured" })).toBe("snapshot of public.items: the capture stopped (uncaptured) before every row was read");
  });
});

describe("the progress printer", () => {
  const capture = (json: boolean, tty: boolean) => {
    const out = { stdout: "", stderr: "", now: 0 };
    const printer = progressPrinter("snapshot", {
      json, tty, stdout: (t) => (out.stdout += t), stderr: (t) => (out.stderr += t), now: () => out.now,
    });
    return { out, printer };
  };
  const at = (over: Partial<SnapshotRow>) => snapshotProgress(request, row(over));

  it("on a terminal, rewrites one stderr line, clears it at the end and prints done on stdout", () => {
    const { out, printer } = capture(false, true);
    printer.show(at({ rowsDone: 0 }));
    printer.show(at({ rowsDone: 0 })); // unchanged: nothing
    printer.show(at({ rowsDone: 1500 }));
    out.now = 1000;
    printer.show(at({ snapshotState: "done", rowsDone: 3000 }));
    printer.end(at({ snapshotState: "done", rowsDone: 3000 }));
    expect(out.stderr).toBe(
      "\r\x1b[2Ksnapshot of public.items: 0 of ~3000 rows (0%)\r\x1b[2Ksnapshot of public.items: 1500 of ~3000 rows (50%)\r\x1b[2K");
    expect(out.stdout).toBe("snapshot of public.items: done, 3000 rows into stream 'public.items' in 1.0 s\n");
  });

  it("off a terminal, prints a line per state and at most one every 10 s", () => {
    const { out, printer } = capture(false, false);
    printer.show(at({ snapshotState: "pending" }));
    printer.show(at({ rowsDone: 100 }));
    out.now = 5000;
    printer.show(at({ rowsDone: 200 }));
    out.now = 10_000;
    printer.show(at({ rowsDone: 300 }));
    expect(out.stderr.split("\n")).toEqual([
      "snapshot of public.items: waiting for the relay to start it",
      "snapshot of public.items: 100 of ~3000 rows (3%)",
      "snapshot of public.items: 300 of ~3000 rows (10%)",
      "",
    ]);
  });

  it("with --json, prints each change as a JSON line on stdout, the last one too, and nothing on stderr", () => {
    const { out, printer } = capture(true, true);
    printer.show(at({ rowsDone: 100 }));
    printer.show(at({ rowsDone: 100 }));
    printer.show(at({ stopped: true, stopReason: "uncaptured", rowsDone: 100 }));
    printer.end(at({ stopped: true, stopReason: "uncaptured", rowsDone: 100 }));
    const lines = out.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { state: string; rowsDone: number });
    expect(lines.map((l) => [l.state, l.rowsDone])).toEqual([["snapshotting", 100], ["stopped", 100]]);
    expect(out.stderr).toBe("");
  });
});
