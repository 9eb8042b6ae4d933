import { describe, expect, it } from "vitest";
import type { RawEvent, WalMessage } from "@tributary/wal";
import { partitionFor } from "@tributary/client";
import { RelayState, type Checkpoint } from "./relay-state.ts";

const start: Checkpoint = { commitLsn: 0n, endLsn: 100n, partialCommitLsn: null, partialEvents: 0, version: 0n };
const event = (key: string, i = 0): WalMessage => ({
  kind: "event",
  event: { stream: "s", key, partitions: 4, id: `id-${key}-${i}`, type: "T", headers: Buffer.from("{}"), data: Buffer.from(`{"i":${i}}`) } satisfies RawEvent,
});
/** A batch's COPY rows as columns (none of these test values needs unescaping). */
const columns = (batch: { rows: Buffer }) => {
  const lines = batch.rows.toString("utf8").split("\n").slice(0, -1).map((line) => line.split("\t"));
  const column = (i: number) => lines.map((fields) => fields[i]!);
  return { stream: column(0), partition: column(1).map(Number), offset: column(2), id: column(3), key: column(4), data: column(6), committedAt: column(8) };
};
const tx = (commitLsn: bigint, endLsn: bigint, events: WalMessage[]): WalMessage[] => [
  { kind: "begin", commitLsn, commitTimeMicros: 1_000_000n },
  ...events,
  { kind: "commit", commitLsn, endLsn },
];
const feed = (state: RelayState, messages: WalMessage[]) => messages.map((m) => state.accept(m));

describe("RelayState", () => {
  it("numbers events densely per partition in arrival order", () => {
    const state = new RelayState(start, [{ stream: "s", partition: partitionFor("a", 4), nextOffset: 7n }], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    expect(partitionFor("c", 4)).not.toBe(partitionFor("a", 4));
    feed(state, tx(200n, 210n, [event("a", 0), event("c", 0), event("a", 1)]));
    const batch = state.takeBatch();
    const rows = columns(batch);
    const offsetsOfA = rows.key.flatMap((k, i) => (k === "a" ? [rows.offset[i]] : []));
    expect(offsetsOfA).toEqual(["7", "8"]);
    expect(rows.offset[1]).toBe("0"); // c starts its own partition at 0
    expect(rows.partition).toEqual(["a", "c", "a"].map((k) => partitionFor(k, 4)));
    expect(rows.data).toEqual([`{"i":0}`, `{"i":0}`, `{"i":1}`]);
    expect(rows.committedAt).toEqual(Array(3).fill("1970-01-01 00:00:01.000000+00"));
    expect(batch.offsets).toEqual(
      expect.arrayContaining([
        { stream: "s", partition: partitionFor("a", 4), nextOffset: "9" },
        { stream: "s", partition: partitionFor("c", 4), nextOffset: "1" },
      ]),
    );
    expect(batch.offsets).toHaveLength(2);
    expect(batch.position).toEqual({ commitLsn: 200n, endLsn: 210n, partialCommitLsn: null, partialEvents: 0 });
  });

  it("skips transactions already in the stream and the written part of a partial one", () => {
    const cp: Checkpoint = { commitLsn: 200n, endLsn: 210n, partialCommitLsn: 300n, partialEvents: 2, version: 5n };
    const state = new RelayState(cp, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(200n, 210n, [event("old")]));
    feed(state, tx(300n, 310n, [event("p", 0), event("p", 1), event("p", 2)]));
    const batch = state.takeBatch();
    expect(columns(batch).id).toEqual(["id-p-2"]);
    expect(batch.position.endLsn).toBe(310n);
  });

  it("cuts a large transaction into batches and records partial progress", () => {
    const state = new RelayState(start, [], { maxBatchEvents: 2, maxBatchBytes: 1 << 20 });
    const full = feed(state, tx(200n, 210n, [event("k", 0), event("k", 1), event("k", 2)]).slice(0, 3));
    expect(full).toEqual([false, false, true]);
    const first = state.takeBatch();
    expect(first.position).toMatchObject({ commitLsn: 0n, endLsn: 100n, partialCommitLsn: 200n, partialEvents: 2 });
    expect(state.durableLsn()).toBe(100n);
    state.committed(first, 1n);
    expect(state.durableLsn()).toBe(100n); // mid-transaction: nothing new to acknowledge
    feed(state, [event("k", 2), { kind: "commit", commitLsn: 200n, endLsn: 210n }]);
    const second = state.takeBatch();
    expect(columns(second).offset).toEqual(["2"]);
    expect(second.offsets).toEqual([{ stream: "s", partition: partitionFor("k", 4), nextOffset: "3" }]);
    state.committed(second, 2n);
    expect(state.durableLsn()).toBe(210n);
    expect(state.checkpoint).toEqual({ commitLsn: 200n, endLsn: 210n, partialCommitLsn: null, partialEvents: 0, version: 2n });
  });

  it("acknowledges an empty transaction only when nothing precedes it unwritten", () => {
    const state = new RelayState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(150n, 160n, []));
    expect(state.durableLsn()).toBe(160n);
    feed(state, tx(200n, 210n, [event("a")]));
    feed(state, tx(250n, 260n, []));
    expect(state.durableLsn()).toBe(160n);
    const batch = state.takeBatch();
    expect(batch.position.endLsn).toBe(260n);
    state.committed(batch, 1n);
    expect(state.durableLsn()).toBe(260n);
  });

  it("advances on an idle keepalive only when idle", () => {
    const state = new RelayState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, [{ kind: "begin", commitLsn: 200n, commitTimeMicros: 0n }]);
    state.advanceIdle(500n);
    expect(state.durableLsn()).toBe(100n);
    feed(state, [{ kind: "commit", commitLsn: 200n, endLsn: 210n }]);
    state.advanceIdle(500n);
    expect(state.durableLsn()).toBe(500n);
  });

  it("never acknowledges past a batch in flight", () => {
    const state = new RelayState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(200n, 210n, [event("a")]));
    const batch = state.takeBatch();
    feed(state, tx(250n, 260n, []));
    state.advanceIdle(900n);
    expect(state.durableLsn()).toBe(100n);
    state.committed(batch, 1n);
    expect(state.durableLsn()).toBe(260n);
  });
});
