import { describe, expect, it } from "vitest";
import { Lsn } from "./lsn.ts";
import { parseEventMessage } from "./event-message.ts";
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

describe("event message", () => {
  it("splits meta, headers and data without parsing the data", () => {
    const text = `["orders","k\\n1",8,"00000000-0000-0000-0000-000000000001","OrderPlaced"]\n{"traceparent": "x"}\n{"a": "line\\nbreak"}`;
    const bytes = Buffer.from(`junk${text}junk`);
    const event = parseEventMessage(bytes, 4, bytes.length - 4);
    expect({ ...event, headers: event.headers.toString(), data: event.data.toString() }).toEqual({
      stream: "orders", key: "k\n1", partitions: 8, id: "00000000-0000-0000-0000-000000000001",
      type: "OrderPlaced", headers: `{"traceparent": "x"}`, data: `{"a": "line\\nbreak"}`,
    });
  });
  it("rejects a message without header lines", () => {
    expect(() => parseEventMessage(Buffer.from("nope"))).toThrow(/malformed/);
    expect(() => parseEventMessage(Buffer.from(`["s"]\n{}\n{}`), 0, 8)).toThrow(/malformed/);
  });
});

describe("wal2json timestamps", () => {
  it("reads microseconds and offsets", () => {
    expect(timestampMicros("1970-01-01 00:00:01.000002+00")).toBe(1_000_002n);
    expect(timestampMicros("1970-01-01 02:00:01.5+02")).toBe(1_500_000n);
    expect(timestampMicros("1970-01-01 00:00:01-05:30")).toBe((5n * 3600n + 1800n + 1n) * 1_000_000n);
  });
});
