import { describe, expect, it } from "vitest";
import { createHmac } from "node:crypto";
import { Keyring, partitionFor } from "@tributary/core";
import type { WalMessage } from "@tributary/wal";
import { timestampText } from "./binary-copy.ts";
import { RelayState, entryKey, type BatchLimits, type Checkpoint, type StreamRows, type TrustOptions } from "./relay-state.ts";

/** A uuid made of a key and a number, so a test can name the event it expects. */
const idOf = (key: string, i: number) => `00000000-0000-4000-8000-${Buffer.from(key).toString("hex").padStart(8, "0").slice(-8)}${i.toString(16).padStart(4, "0")}`;

const start: Checkpoint = { commitLsn: 0n, endLsn: 100n, partialCommitLsn: null, partialEvents: 0, version: 0n };
const secret = Buffer.alloc(32, 1);
const keyring = new Keyring([{ id: 1, secret }]);
/** A message as tributary.append() signs it (migrations/0006_trusted_append.sql). */
const signed = (payload: string): Buffer =>
  Buffer.from(`tributary-v1 1 ${createHmac("sha256", secret).update(payload).digest("hex")}\n${payload}`);
let nextLsn = 1000n;
const event = (key: string, i = 0): WalMessage => ({
  kind: "message",
  lsn: nextLsn++,
  content: signed(`["s",${JSON.stringify(key)},4,"${idOf(key, i)}","T"]\n{}\n{"i":${i}}`),
});
const forged = (content: string): WalMessage => ({ kind: "message", lsn: nextLsn++, content: Buffer.from(content) });
const newState = (cp: Checkpoint, offsets: Array<{ stream: string; partition: number; nextOffset: bigint }>, limits: BatchLimits, trust: Partial<TrustOptions> = {}) =>
  new RelayState(cp, offsets, limits, { keyring, ...trust });
/** A batch's binary COPY rows (binary-copy.ts) as columns of text. */
const columns = (batch: { rows: readonly StreamRows[] }) => {
  const lines: string[][] = [];
  for (const r of batch.rows) {
    const bytes = Buffer.concat(r.chunks);
    let at = 19; // past the header
    for (let count = bytes.readInt16BE(at); count !== -1; count = bytes.readInt16BE(at)) {
      at += 2;
      const f: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const length = bytes.readInt32BE(at);
        f.push(bytes.subarray(at + 4, at + 4 + length));
        at += 4 + length;
      }
      const uuid = f[3]!.length === 16 ? f[3]!.toString("hex").replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-") : "not a uuid";
      const micros = f[8]!.readBigInt64BE() + 946_684_800_000_000n;
      lines.push([f[0]!.toString(), `${f[1]!.readInt32BE()}`, `${f[2]!.readBigInt64BE()}`, uuid, f[4]!.toString(), f[5]!.toString(),
        f[6]!.subarray(1).toString(), f[7]!.subarray(1).toString(), timestampText(micros), `${f[9]!.readInt32BE()}`]);
    }
  }
  const column = (i: number) => lines.map((fields) => fields[i]!);
  return { stream: column(0), partition: column(1).map(Number), offset: column(2), id: column(3), key: column(4), data: column(6), committedAt: column(8), segment: column(9) };
};
const tx = (commitLsn: bigint, endLsn: bigint, events: WalMessage[]): WalMessage[] => [
  { kind: "begin", commitLsn, commitTimeMicros: 1_000_000n, xid: 1 },
  ...events,
  { kind: "commit", commitLsn, endLsn },
];
const feed = (state: RelayState, messages: WalMessage[]) => messages.map((m) => state.accept(m));

describe("RelayState", () => {
  it("begins a requested segment with the next batch, at the partitions' next offsets, and writes the rows after it there", () => {
    const a = partitionFor("a", 4);
    const state = new RelayState(start, [{ stream: "s", partition: a, nextOffset: 7n }], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 }, { keyring }, null,
      [{ stream: "s", segment: 3 }]);
    feed(state, tx(200n, 210n, [event("a", 0)]));
    state.requestRoll("s", 5, 4); // not the next one: stale, ignored
    state.requestRoll("s", 4, 4);
    expect(state.hasBatch()).toBe(true);
    const first = state.takeBatch();
    expect(columns(first).segment).toEqual(["3"]); // encoded before the roll
    const expected = ["0", "0", "0", "0"];
    expected[a] = "8";
    expect(first.rolls).toEqual([{ stream: "s", segment: 4, firstOffsets: expected }]);
    state.committed(first, 1n);
    feed(state, tx(300n, 310n, [event("a", 1)]));
    const second = state.takeBatch();
    expect(columns(second)).toMatchObject({ offset: ["8"], segment: ["4"] });
    expect(second.rolls).toEqual([]);
    expect(state.segmentOf("s")).toBe(4);
  });

  it("keeps each stream's rows apart, for the segment each stream is in", () => {
    const on = (stream: string, key: string): WalMessage => ({
      kind: "message",
      lsn: nextLsn++,
      content: signed(`[${JSON.stringify(stream)},${JSON.stringify(key)},2,"${idOf(stream + key, 0)}","T"]\n{}\n{}`),
    });
    const state = new RelayState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 }, { keyring }, null, [{ stream: "t", segment: 6 }]);
    feed(state, tx(200n, 210n, [on("s", "a"), on("t", "b"), on("s", "c")]));
    const batch = state.takeBatch();
    expect(batch.rows.map((r) => [r.stream, r.segment])).toEqual([["s", 0], ["t", 6]]);
    const [s, t] = batch.rows.map((r) => columns({ rows: [r] }));
    expect(s).toMatchObject({ stream: ["s", "s"], key: ["a", "c"], segment: ["0", "0"] });
    expect(t).toMatchObject({ stream: ["t"], key: ["b"], segment: ["6"] });
    state.committed(batch, 1n);
    feed(state, tx(300n, 310n, [on("t", "d")]));
    expect(state.takeBatch().rows.map((r) => r.stream)).toEqual(["t"]); // a stream without events this batch has no rows
  });

  it("begins a segment with a batch of no events when nothing else waits", () => {
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    expect(state.hasBatch()).toBe(false);
    state.requestRoll("idle", 1, 2);
    expect(state.hasBatch()).toBe(true);
    const batch = state.takeBatch();
    expect(batch).toMatchObject({ size: 0, rolls: [{ stream: "idle", segment: 1, firstOffsets: ["0", "0"] }] });
    state.committed(batch, 1n);
    expect(state.hasBatch()).toBe(false);
  });

  it("numbers events densely per partition in arrival order", () => {
    const state = newState(start, [{ stream: "s", partition: partitionFor("a", 4), nextOffset: 7n }], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
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
    const state = newState(cp, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(200n, 210n, [event("old")]));
    feed(state, tx(300n, 310n, [event("p", 0), event("p", 1), event("p", 2)]));
    const batch = state.takeBatch();
    expect(columns(batch).id).toEqual([idOf("p", 2)]);
    expect(batch.position.endLsn).toBe(310n);
  });

  it("cuts a large transaction into batches and records partial progress", () => {
    const state = newState(start, [], { maxBatchEvents: 2, maxBatchBytes: 1 << 20 });
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

  it("acknowledges only what the checkpoint holds: transactions without events move the position, an empty batch writes it", () => {
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(150n, 160n, []));
    expect(state.durableLsn()).toBe(100n);
    expect(state.positionAhead()).toBe(true);
    feed(state, tx(200n, 210n, [event("a")]));
    feed(state, tx(250n, 260n, []));
    const batch = state.takeBatch();
    expect(batch.position.endLsn).toBe(260n);
    state.committed(batch, 1n);
    expect(state.durableLsn()).toBe(260n);
    feed(state, tx(300n, 310n, []));
    const position = state.takeBatch();
    expect([position.size, position.rejects.length, position.position.endLsn]).toEqual([0, 0, 310n]);
    state.committed(position, 2n);
    expect(state.durableLsn()).toBe(310n);
    expect(state.positionAhead()).toBe(false);
  });

  it("moves the position on an idle keepalive only when idle", () => {
    const state = newState(start, [], { maxBatchEvents: 2, maxBatchBytes: 1 << 20 });
    feed(state, [{ kind: "begin", commitLsn: 200n, commitTimeMicros: 0n, xid: 1 }]);
    state.advanceIdle(500n);
    expect(state.positionAhead()).toBe(false);
    feed(state, [{ kind: "commit", commitLsn: 200n, endLsn: 210n }]);
    state.advanceIdle(500n);
    expect(state.positionAhead()).toBe(true);
    expect(state.durableLsn()).toBe(100n); // not before the checkpoint holds it
    state.committed(state.takeBatch(), 1n);
    expect(state.durableLsn()).toBe(500n);
    // A transaction cut into batches afterwards keeps that end LSN in its partial position.
    feed(state, [{ kind: "begin", commitLsn: 600n, commitTimeMicros: 0n, xid: 2 }, event("a"), event("b")]);
    expect(state.takeBatch().position).toMatchObject({ endLsn: 500n, partialCommitLsn: 600n, partialEvents: 2 });
  });

  it("never acknowledges past a batch in flight", () => {
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(200n, 210n, [event("a")]));
    const batch = state.takeBatch();
    feed(state, tx(250n, 260n, []));
    expect(state.durableLsn()).toBe(100n);
    state.committed(batch, 1n);
    expect(state.durableLsn()).toBe(210n);
    expect(state.positionAhead()).toBe(true);
  });

  it("sets aside unsigned and forged messages without an offset, and writes them with the batch", () => {
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    const forgery = `tributary-v1 1 ${"0".repeat(64)}\n["s","a",4,"x","T"]\n{}\n{}`;
    feed(state, tx(200n, 210n, [event("a", 0), forged("garbage"), forged(forgery), event("a", 1)]));
    expect(state.isIdle()).toBe(false);
    const batch = state.takeBatch();
    expect(columns(batch).offset).toEqual(["0", "1"]); // dense: the rejects took none
    expect(batch.rejects.map((r) => r.reason)).toEqual(["unsigned", "bad_signature"]);
    expect(batch.rejects[0]!.raw.toString()).toBe("garbage");
    expect(batch.rejects[0]!.commitLsn).toBe(200n);
    expect(batch.first).toEqual({ commitLsn: 200n, index: 1 });
    expect(batch.last).toEqual({ commitLsn: 200n, index: 4 });
  });

  it("a transaction holding only a rejected message is written before it is acknowledged", () => {
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 });
    feed(state, tx(200n, 210n, [forged("garbage")]));
    expect(state.durableLsn()).toBe(100n);
    expect(state.hasBatch()).toBe(true);
    expect(state.isIdle()).toBe(false);
    const batch = state.takeBatch();
    expect(batch.size).toBe(0);
    state.committed(batch, 1n);
    expect(state.durableLsn()).toBe(210n);
  });

  it("isolates entries one per batch through the refused batch's last entry, then sets the refused one aside", () => {
    const refused = new Map([[entryKey({ commitLsn: 200n, index: 2 }), "index row too large (SQLSTATE 54000)"]]);
    const state = newState(start, [], { maxBatchEvents: 100, maxBatchBytes: 1 << 20 }, { refused, isolateThrough: { commitLsn: 200n, index: 3 } });
    const batches = [];
    let version = 0n;
    for (const message of tx(200n, 210n, [event("a", 0), event("b", 0), event("a", 1), event("a", 2)])) {
      if (state.accept(message)) {
        const batch = state.takeBatch();
        state.committed(batch, ++version);
        batches.push(batch);
      }
    }
    batches.push(state.takeBatch());
    expect(batches.map((b) => [b.size, b.rejects.length])).toEqual([[1, 0], [0, 1], [1, 0], [1, 0]]);
    expect(batches[1]!.rejects[0]).toMatchObject({ reason: "write_failed", stream: "s", eventId: idOf("b", 0) });
    expect(batches[1]!.rejects[0]!.detail).toMatch(/SQLSTATE 54000/);
    expect(batches[1]!.position).toMatchObject({ partialCommitLsn: 200n, partialEvents: 2 });
    expect(batches.map((b) => columns(b).offset)).toEqual([["0"], [], ["1"], ["2"]]);
  });
});
