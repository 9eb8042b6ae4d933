import { describe, expect, it } from "vitest";
import { assignPartitions, partitionKey, type GroupMember } from "./assignor.ts";

const members = (...ids: string[]): GroupMember[] => ids.map((id) => ({ id, streams: ["s"] }));
const counts = (owners: Map<string, string>) => {
  const c = new Map<string, number>();
  for (const owner of owners.values()) c.set(owner, (c.get(owner) ?? 0) + 1);
  return c;
};
const moved = (before: Map<string, string>, after: Map<string, string>) =>
  [...after.entries()].filter(([key, owner]) => before.has(key) && before.get(key) !== owner).length;

describe("assignPartitions", () => {
  it("spreads every partition evenly (±1) over the subscribers", () => {
    for (const n of [1, 2, 3, 5, 7, 16, 20]) {
      const owners = assignPartitions([{ name: "s", partitions: 16 }], members(...Array.from({ length: n }, (_, i) => `m${i}`)), new Map());
      expect(owners.size).toBe(16);
      const sizes = [...counts(owners).values()];
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      expect(counts(owners).size).toBe(Math.min(n, 16));
    }
  });

  it("moves only what a join or a leave requires (sticky)", () => {
    const streams = [{ name: "s", partitions: 16 }];
    const four = assignPartitions(streams, members("a", "b", "c", "d"), new Map());
    const five = assignPartitions(streams, members("a", "b", "c", "d", "e"), four);
    expect(moved(four, five)).toBe(3); // e gets ⌊16/5⌋ = 3, nothing else moves
    expect(counts(five).get("e")).toBe(3);
    const three = assignPartitions(streams, members("a", "b", "d"), four);
    expect(moved(four, three)).toBe(4); // only c's four partitions move
    for (const [key, owner] of four) if (owner !== "c") expect(three.get(key)).toBe(owner);
  });

  it("is stable: the same inputs give the same owners, and a balanced group does not change", () => {
    const streams = [{ name: "s", partitions: 10 }, { name: "t", partitions: 3 }];
    const group = [{ id: "x", streams: ["s", "t"] }, { id: "y", streams: ["s", "t"] }, { id: "z", streams: ["s"] }];
    const first = assignPartitions(streams, group, new Map());
    expect(assignPartitions(streams, group, new Map())).toEqual(first);
    expect(assignPartitions(streams, group, first)).toEqual(first);
  });

  it("only gives a stream's partitions to its subscribers, and balances totals across streams", () => {
    const streams = [{ name: "a", partitions: 1 }, { name: "b", partitions: 1 }, { name: "c", partitions: 1 }, { name: "d", partitions: 1 }];
    const group = [{ id: "m1", streams: ["a", "b", "c", "d"] }, { id: "m2", streams: ["a", "b", "c", "d"] }, { id: "m3", streams: ["d"] }];
    const owners = assignPartitions(streams, group, new Map());
    expect(owners.size).toBe(4);
    expect(owners.get(partitionKey("d", 0))).toBe("m3");
    expect(counts(owners).get("m1")).toBe(2);
    expect(counts(owners).get("m2")).toBe(1);
  });

  it("leaves partitions of unsubscribed streams unassigned and drops owners that left", () => {
    const owners = assignPartitions([{ name: "s", partitions: 2 }, { name: "lonely", partitions: 2 }], members("a"), new Map([[partitionKey("s", 1), "gone"]]));
    expect([...owners.entries()]).toEqual([[partitionKey("s", 0), "a"], [partitionKey("s", 1), "a"]].sort());
  });
});
