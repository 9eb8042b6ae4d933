import { describe, expect, it } from "vitest";
import { copyEscape, timestampText, toCopyText } from "./copy-format.ts";

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

  it("writes one tab-separated line per row", () => {
    const text = toCopyText({
      stream: ["s", "s"], partition: [1, 2], offset: ["0", "7"], id: ["u1", "u2"], key: ["a\tb", "c"],
      type: ["T", "T"], data: ["{}", `"\\\\"`], headers: ["{}", "{}"], committedAtMicros: ["1000000", "1000000"],
    });
    expect(text).toBe(
      "s\t1\t0\tu1\ta\\tb\tT\t{}\t{}\t1970-01-01 00:00:01.000000+00\n" +
        `s\t2\t7\tu2\tc\tT\t"\\\\\\\\"\t{}\t1970-01-01 00:00:01.000000+00\n`,
    );
  });
});
