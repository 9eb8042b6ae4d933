import { describe, expect, it } from "vitest";
import { murmur2, partitionFor } from "./partitioner.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

describe("murmur2 (Kafka's default partitioner)", () => {
  // Vectors from Apache Kafka's UtilsTest.testMurmur2.
  it.each([
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
    ["abc", 479470107],
  ])("murmur2(%s) = %d", (input, expected) => {
    expect(murmur2(utf8(input))).toBe(expected);
  });

  it("maps keys into [0, partitions) and is stable", () => {
    for (let i = 0; i < 1000; i++) {
      const p = partitionFor(`key-${i}`, 7);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(7);
      expect(partitionFor(`key-${i}`, 7)).toBe(p);
    }
  });

  it("hashes UTF-8 bytes, not UTF-16 code units", () => {
    expect(partitionFor("ünïcödé-ключ", 1000)).toBe((murmur2(utf8("ünïcödé-ключ")) & 0x7fffffff) % 1000);
    expect(murmur2(utf8("é"))).not.toBe(murmur2(new Uint8Array([0xe9])));
  });

  it("hashes a prefix of the bytes when given a length, and keys longer than its reused buffer", () => {
    expect(murmur2(utf8("foobar-and-the-rest"), 6)).toBe(-790332482);
    const long = "ключ-".repeat(200); // 1,000 UTF-16 units, 1,800 UTF-8 bytes
    expect(partitionFor(long, 1000)).toBe((murmur2(utf8(long)) & 0x7fffffff) % 1000);
    expect(partitionFor("abc", 1000)).toBe((479470107 & 0x7fffffff) % 1000); // after a long key: no stale bytes
  });
});
