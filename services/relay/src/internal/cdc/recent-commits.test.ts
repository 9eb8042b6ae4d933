import { describe, expect, it } from "vitest";
import { RecentCommits } from "./recent-commits.ts";

describe("RecentCommits", () => {
  it("keeps the newest 10,000 transactions: the oldest go first", () => {
    const recent = new RecentCommits();
    for (let xid = 1; xid <= 25_000; xid++) recent.touch(xid, BigInt(xid * 100), "1", `k${xid}`);
    expect(recent.get(15_000)).toBeUndefined();
    expect(recent.get(15_001)?.commitLsn).toBe(1_500_100n);
    expect([...recent.get(25_000)!.keys!.get("1")!]).toEqual(["k25000"]);
  });

  it("an xid seen again with another commit replaces the old one, which is then skipped when evicting", () => {
    const recent = new RecentCommits();
    recent.touch(7, 100n, "1", "a");
    recent.touch(7, 200n, "1", "b");
    expect([...recent.get(7)!.keys!.get("1")!]).toEqual(["b"]);
    for (let xid = 1000; xid < 1000 + 9_999; xid++) recent.touch(xid, BigInt(xid * 1000), "1", `k${xid}`);
    expect(recent.get(7)?.commitLsn).toBe(200n); // 10,000 kept: the stale entry did not count
    recent.touch(50_000, 99_000_000n, "1", "z");
    expect(recent.get(7)).toBeUndefined();
    expect(recent.get(1000)).toBeDefined();
  });

  it("at most 100,000 keys: older transactions make room, and one with more keys than fit keeps none", () => {
    const recent = new RecentCommits();
    for (let i = 0; i < 60_000; i++) recent.touch(1, 100n, "1", `a${i}`);
    for (let i = 0; i < 60_000; i++) recent.touch(2, 200n, "1", `b${i}`);
    expect(recent.get(1)).toBeUndefined();
    expect(recent.get(2)!.keys!.get("1")!.size).toBe(60_000);
    for (let i = 0; i < 100_001; i++) recent.touch(3, 300n, "1", `c${i}`);
    expect(recent.get(3)!.keys).toBeNull();
    expect(recent.get(3)!.captures.has("1")).toBe(true);
  });
});
