import { describe, expect, it } from "vitest";
import { CopyRows, timestampBinary, timestampText } from "./binary-copy.ts";

const HEADER = "5047434f50590aff0d0a00" + "00000000" + "00000000";
const TRAILER = "ffff";
const hex = (rows: CopyRows) => Buffer.concat(rows.chunks()).toString("hex");
const field = (bytes: string) => (bytes.length / 2).toString(16).padStart(8, "0") + bytes;

describe("COPY binary format", () => {
  it("frames rows between the header and the trailer: field count, then each field's length and bytes", () => {
    const rows = new CopyRows();
    expect(hex(rows)).toBe(HEADER + TRAILER);
    rows.row(3).text("s").int4(7).int8(2 ** 40 + 5);
    rows.row(1).bytes(Buffer.from("ab"));
    expect(hex(rows)).toBe(
      HEADER +
        "0003" + field("73") + field("00000007") + field("0000010000000005") +
        "0001" + field("6162") +
        TRAILER,
    );
    expect(rows.byteLength).toBe(Buffer.concat(rows.chunks()).length - 2);
  });

  it("writes text as UTF-8 and jsonb as version 1 and its text, from strings or bytes, unescaped", () => {
    const text = (write: (rows: CopyRows) => void) => {
      const rows = new CopyRows();
      write(rows.row(1));
      return hex(rows).slice(HEADER.length + 4, -TRAILER.length);
    };
    expect(text((r) => r.text("k\te\ny\\"))).toBe(field(Buffer.from("k\te\ny\\").toString("hex")));
    expect(text((r) => r.text("ключ €"))).toBe(field(Buffer.from("ключ €").toString("hex")));
    expect(text((r) => r.text("é".repeat(100)))).toBe(field(Buffer.from("é".repeat(100)).toString("hex")));
    expect(text((r) => r.jsonb('{"a": "\\n"}'))).toBe(field("01" + Buffer.from('{"a": "\\n"}').toString("hex")));
    expect(text((r) => r.jsonb(Buffer.from('{"é": 1}')))).toBe(field("01" + Buffer.from('{"é": 1}').toString("hex")));
    expect(text((r) => r.text(""))).toBe(field(""));
  });

  it("writes a uuid's 16 bytes from any form uuid's input takes, and 17 bytes the server refuses for anything else", () => {
    const uuid = (text: string) => {
      const rows = new CopyRows();
      rows.row(1).uuid(text);
      return hex(rows).slice(HEADER.length + 4, -TRAILER.length);
    };
    const bytes = field("a0eebc999c0b4ef8bb6d6bb9bd380a11");
    for (const form of [
      "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
      "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
      "a0eebc999c0b4ef8bb6d6bb9bd380a11",
      "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
      "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
    ]) {
      expect(uuid(form), form).toBe(bytes);
    }
    const refused = field("00".repeat(17));
    for (const bad of ["", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11a", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      "a0eebc99--9c0b4ef8bb6d6bb9bd380a11", "-a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc999c0b4ef8bb6d6bb9bd380a11-", "a0e-ebc999c0b4ef8bb6d6bb9bd380a11",
      "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1é"]) {
      expect(uuid(bad), bad).toBe(refused);
    }
  });

  it("writes commit times as µs since 2000-01-01, and as text with microseconds in UTC", () => {
    expect(timestampBinary(946_684_800_000_000n).toString("hex")).toBe("0000000000000000");
    expect(timestampBinary(946_684_800_000_001n).toString("hex")).toBe("0000000000000001");
    expect(timestampBinary(946_684_799_999_999n).toString("hex")).toBe("ffffffffffffffff");
    expect(timestampText(1_000_002n)).toBe("1970-01-01 00:00:01.000002+00");
    expect(timestampText(1_763_785_327_172_272n)).toBe("2025-11-22 04:22:07.172272+00");
  });

  it("keeps a batch in chunks of the given size, starting small and doubling, a field never split", () => {
    const rows = new CopyRows(1024, 128);
    const text = "x".repeat(20);
    for (let i = 0; i < 200; i++) rows.row(1).text(text);
    const chunks = rows.chunks();
    const sizes = chunks.slice(0, -1).map((chunk) => chunk.length);
    // A chunk is sealed when the next field (4 + 60 bytes reserved) no longer fits: 128 → 256 → 512 → 1024 → 1024 …
    expect(sizes.slice(0, 4).map((size, i) => size > (128 << i) - 64 && size <= 128 << i)).toEqual([true, true, true, true]);
    expect(sizes.slice(4, -1).every((size) => size > 1024 - 64 && size <= 1024)).toBe(true);
    const row = "0001" + field(Buffer.from(text).toString("hex"));
    expect(Buffer.concat(chunks).toString("hex")).toBe(HEADER + row.repeat(200) + TRAILER);
    // A field larger than a chunk gets a chunk of its own.
    const large = new CopyRows(64);
    large.row(1).text("y".repeat(100));
    expect(Buffer.concat(large.chunks()).toString("hex")).toBe(HEADER + "0001" + field("79".repeat(100)) + TRAILER);
  });
});
