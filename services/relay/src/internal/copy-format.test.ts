import { describe, expect, it } from "vitest";
import { copyEscape, CopyRows, timestampText } from "./copy-format.ts";

describe("COPY text format", () => {
  it("escapes only backslash, tab, newline and carriage return", () => {
    expect(copyEscape(`{"a": "x"}`)).toBe(`{"a": "x"}`);
    expect(copyEscape(`{"a": "line\\nbreak \\"q\\""}`)).toBe(`{"a": "line\\\\nbreak \\\\"q\\\\""}`);
    expect(copyEscape("k\te\ny\r")).toBe("k\\te\\ny\\r");
  });

  it("formats commit times with microseconds in UTC", () => {
    expect(timestampText(1_000_002n)).toBe("1970-01-01 00:00:01.000002+00");
    expect(timestampText(1_763_785_327_172_272n)).toBe("2025-11-22 04:22:07.172272+00");
  });

  it("writes one tab-separated line per row, escaping text and bytes", () => {
    const rows = new CopyRows(8); // small: forces the buffer to grow
    rows.text("s").endField().plain("1").endField().text("a\tb").endField()
      .bytes(Buffer.from(`{"k": "é\\n"}`)).endField().plain("1970-01-01 00:00:01.000000+00").endRow();
    rows.text("ü").endField().plain("2").endField().text("c").endField()
      .bytes(Buffer.from("{}\r\n")).endField().plain("x").endRow();
    expect(rows.view().toString("utf8")).toBe(
      `s\t1\ta\\tb\t{"k": "é\\\\n"}\t1970-01-01 00:00:01.000000+00\n` +
        "ü\t2\tc\t{}\\r\\n\tx\n",
    );
    expect(rows.byteLength).toBe(rows.view().length);
  });
});
