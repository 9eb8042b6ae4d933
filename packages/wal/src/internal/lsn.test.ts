import { describe, expect, it } from "vitest";
import { Lsn } from "./lsn.ts";
import { timestampMicros } from "./wal2json.ts";

describe("Lsn", () => {
  it("parses and formats both halves", () => {
    expect(Lsn.parse("0/16B3748")).toBe(0x16b3748n);
    expect(Lsn.parse("1/0")).toBe(1n << 32n);
    expect(Lsn.format(Lsn.parse("AB/FFFFFFFF"))).toBe("AB/FFFFFFFF");
    expect(Lsn.parse("0/1") < Lsn.parse("1/0")).toBe(true);
  });
  it("rejects garbage with the expected shape in the message", () => {
    expect(() => Lsn.parse("16B3748")).toThrow(/expected hex "X\/Y"/);
  });
});

describe("wal2json timestamps", () => {
  it("reads microseconds and offsets", () => {
    expect(timestampMicros("1970-01-01 00:00:01.000002+00")).toBe(1_000_002n);
    expect(timestampMicros("1970-01-01 02:00:01.5+02")).toBe(1_500_000n);
    expect(timestampMicros("1970-01-01 00:00:01-05:30")).toBe((5n * 3600n + 1800n + 1n) * 1_000_000n);
  });
});
