import { describe, expect, it } from "vitest";
import { RecentCommits } from "./recent-commits.ts";

const keysOf = (recent: RecentCommits, xid: number, capture = "1") => {
  const keys = recent.keys(xid, capture);
  return keys === null ? null : [...keys].sort();
};

describe("RecentCommits", () => {
  it("keeps the newest 10,000 transactions: the oldest go first", () => {
    const recent = new RecentCommits();
    for (let xid = 1; xid <= 25_000; xid++) recent.touch(xid, BigInt(xid * 100), "1", `k${xid}`);
    expect(recent.get(15_000)).toBeUndefined();
    expect(recent.get(15_001)?.commitLsn).toBe(1_500_100n);
    expect(keysOf(recent, 25_000)).toEqual(["k25000"]);
    expect(keysOf(recent, 15_001)).toEqual(["k15001"]);
    expect(keysOf(recent, 15_000)).toBeNull();
  });

  it("an xid seen again with another commit replaces the old one, which is then skipped when evicting", () => {
    const recent = new RecentCommits();
    recent.touch(7, 100n, "1", "a");
    recent.touch(7, 200n, "1", "b");
    expect(keysOf(recent, 7)).toEqual(["b"]);
    for (let xid = 1000; xid < 1000 + 9_999; xid++) recent.touch(xid, BigInt(xid * 1000), "1", `k${xid}`);
    expect(recent.get(7)?.commitLsn).toBe(200n); // 10,000 kept: the stale entry did not count
    recent.touch(50_000, 99_000_000n, "1", "z");
    expect(recent.get(7)).toBeUndefined();
    expect(recent.get(1000)).toBeDefined();
  });

  it("keeps each capture's keys of a transaction apart, with any text a key can hold", () => {
    const recent = new RecentCommits();
    const odd = ["ключ", '["a","b\\u0001"]', "tab\there", "\u0001lead", "€".repeat(50)];
    for (const key of odd) recent.touch(9, 900n, "12", key);
    recent.touch(9, 900n, "3", "other");
    recent.touch(9, 900n, "12", "ключ"); // twice: once in the set
    expect(recent.get(9)!.captures).toEqual(["12", "3"]);
    expect(keysOf(recent, 9, "12")).toEqual([...odd].sort());
    expect(keysOf(recent, 9, "3")).toEqual(["other"]);
    expect(keysOf(recent, 9, "4")).toEqual([]);
  });

  it("keys survive the ring's wrap-around; a transaction the ring came round over keeps none", () => {
    const recent = new RecentCommits(1000);
    for (let xid = 1; xid <= 150; xid++) recent.touch(xid, BigInt(xid), "1", `key-${xid}`); // 8–10 bytes each: 1,392 bytes, wrapping
    expect(keysOf(recent, 150)).toEqual(["key-150"]);
    for (let xid = 100; xid <= 150; xid++) expect(keysOf(recent, xid)).toEqual([`key-${xid}`]); // on both sides of the wrap (after key-109)
    expect(keysOf(recent, 1)).toBeNull(); // overwritten
    expect(recent.get(1)?.captures).toEqual(["1"]); // still known as a commit of capture 1: its chunk is read again
    for (let i = 0; i < 200; i++) recent.touch(200, 200n, "1", `k${i}`); // ~1,400 bytes: more than the ring
    expect(keysOf(recent, 200)).toBeNull();
    expect(keysOf(recent, 150)).toBeNull();
    recent.touch(201, 201n, "1", "x".repeat(400)); // needs 1,202 bytes of room: never fits
    expect(keysOf(recent, 201)).toBeNull();
    recent.touch(202, 202n, "1", "after");
    expect(keysOf(recent, 202)).toEqual(["after"]);
  });

  it("a transaction touched again after another one's records keeps no keys (its range would hold the other's)", () => {
    const recent = new RecentCommits();
    recent.touch(1, 10n, "1", "a");
    recent.touch(2, 20n, "1", "b");
    recent.touch(1, 10n, "1", "c");
    expect(keysOf(recent, 1)).toBeNull();
    expect(keysOf(recent, 2)).toEqual(["b"]);
  });
});
