import { describe, expect, it } from "vitest";
import { CopyRows, timestampText } from "./copy-format.ts";

const escaped = (write: (rows: CopyRows) => void, chunkBytes?: number) => {
  const rows = new CopyRows(chunkBytes);
  write(rows);
  return Buffer.concat(rows.chunks()).toString("utf8");
};

describe("COPY text format", () => {
  it("escapes only backslash, tab, newline and carriage return, in text and in bytes", () => {
    expect(escaped((r) => r.text(`{"a": "x"}`))).toBe(`{"a": "x"}`);
    expect(escaped((r) => r.text(`{"a": "line\\nbreak \\"q\\""}`))).toBe(`{"a": "line\\\\nbreak \\\\"q\\\\""}`);
    expect(escaped((r) => r.text("k\te\ny\r"))).toBe("k\\te\\ny\\r");
    expect(escaped((r) => r.bytes(Buffer.from("k\te\ny\r\\")))).toBe("k\\te\\ny\\r\\\\");
    // Longer than the short-field loops: native scans, then the same escapes.
    expect(escaped((r) => r.text("a\tb\\".repeat(30)))).toBe("a\\tb\\\\".repeat(30));
    expect(escaped((r) => r.bytes(Buffer.from("a\nb\r".repeat(30))))).toBe("a\\nb\\r".repeat(30));
    expect(escaped((r) => r.text("x".repeat(64)).endField().text("y".repeat(65)))).toBe(`${"x".repeat(64)}\t${"y".repeat(65)}`);
  });

  it("escapes in place next to multi-byte characters, in chunks with no room to spare", () => {
    const text = "ü\\é\tключ\n€\r";
    const expected = "ü\\\\é\\tключ\\n€\\r";
    for (const chunkBytes of [1, 3 * text.length, 64 * 1024]) {
      expect(escaped((r) => r.plain("x").text(text).endField().text(text).endRow(), chunkBytes)).toBe(`x${expected}\t${expected}\n`);
    }
    // The worst case: every unit escaped (2 bytes each, within the 3 reserved).
    expect(escaped((r) => r.text("\\".repeat(100)), 300)).toBe("\\\\".repeat(100));
  });

  it("formats commit times with microseconds in UTC", () => {
    expect(timestampText(1_000_002n)).toBe("1970-01-01 00:00:01.000002+00");
    expect(timestampText(1_763_785_327_172_272n)).toBe("2025-11-22 04:22:07.172272+00");
  });

  it("writes one tab-separated line per row, escaping text and bytes", () => {
    const rows = new CopyRows(8); // small chunks: fields go to new chunks, never split
    rows.text("s").endField().plain("1").endField().text("a\tb").endField()
      .bytes(Buffer.from(`{"k": "é\\n"}`)).endField().plain("1970-01-01 00:00:01.000000+00").endRow();
    rows.text("ü").endField().plain("2").endField().text("c").endField()
      .bytes(Buffer.from("{}\r\n")).endField().plain("x").endRow();
    const chunks = rows.chunks();
    expect(Buffer.concat(chunks).toString("utf8")).toBe(
      `s\t1\ta\\tb\t{"k": "é\\\\n"}\t1970-01-01 00:00:01.000000+00\n` +
        "ü\t2\tc\t{}\\r\\n\tx\n",
    );
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.every((chunk) => chunk.length <= 29)).toBe(true); // the longest field: the timestamp
    expect(rows.byteLength).toBe(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  });

  it("keeps a batch in chunks of the given size", () => {
    const rows = new CopyRows(1024);
    const field = "x".repeat(100);
    for (let i = 0; i < 100; i++) rows.text(field).endRow();
    const chunks = rows.chunks();
    expect(chunks.length).toBeGreaterThanOrEqual(10); // 10,100 bytes in chunks of at most 1,024
    expect(chunks.every((chunk) => chunk.length <= 1024)).toBe(true);
    expect(chunks.slice(0, -1).every((chunk) => chunk.length >= 512)).toBe(true); // only the last is partly filled
    expect(Buffer.concat(chunks).toString("latin1")).toBe(`${field}\n`.repeat(100));
  });

  it("starts with a small chunk and doubles each next one up to the full size", () => {
    const rows = new CopyRows(1024, 128);
    const field = "x".repeat(20);
    for (let i = 0; i < 200; i++) rows.text(field).endRow();
    const sizes = rows.chunks().map((chunk) => chunk.length);
    // Each chunk is sealed when the next field (reserving 60 bytes) no longer fits: 128 → 256 → 512 → 1024 → 1024 …
    expect(sizes.slice(0, 4).map((size, i) => size > (128 << i) - 63 && size <= 128 << i)).toEqual([true, true, true, true]);
    expect(sizes.slice(4, -1).every((size) => size > 1024 - 63 && size <= 1024)).toBe(true);
    expect(Buffer.concat(rows.chunks()).toString("latin1")).toBe(`${field}\n`.repeat(200));
  });
});
