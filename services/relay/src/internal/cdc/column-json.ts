/**
 * One column value of a captured row, from the decoders' text (the type's
 * output function, as pgoutput and wal2json print it) to the JSON text that
 * goes into the event's data. The result is text, parsed once by PostgreSQL
 * as jsonb: integers keep every digit, never passing through a JS number.
 *
 * The replication session runs with DateStyle=ISO, MDY, TimeZone=UTC,
 * IntervalStyle=iso_8601, extra_float_digits=1 and bytea_output=hex; a
 * date, timestamp, integer, float, boolean or bytea text of another shape is
 * a ColumnValueError, never a guess.
 *
 * Dates and timestamps are ISO 8601: BC years in astronomical numbering
 * (1 BC is 0000, 44 BC is -0043), years after 9999 with PostgreSQL's digits,
 * infinity and -infinity as those strings; timestamptz in UTC with "Z".
 * time, timetz and interval are their text; char(n) keeps its padding.
 */
import type { ColumnType, ValueFormat } from "./type-catalog.ts";

export { TypeCatalog, type ColumnType, type ValueFormat } from "./type-catalog.ts";

/** A value whose text does not have the shape its type and the session settings print. */
export class ColumnValueError extends Error {
  override readonly name = "ColumnValueError";
  constructor(
    readonly typeName: string,
    readonly text: string,
    why: string,
  ) {
    super(`cannot map a ${typeName} value to JSON: ${why} (text: ${JSON.stringify(text.slice(0, 80))})`);
  }
}

export function columnJson(type: ColumnType, text: string | null): string {
  if (text === null) return "null";
  switch (type.kind) {
    case "base":
      return baseJson(type.format, type.name, text);
    case "domain":
      return columnJson(type.base, text);
    case "array":
      return arrayJson(type, text);
    case "enum":
    case "other":
      return JSON.stringify(text);
  }
}

const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const FLOAT_WORDS = new Set(["NaN", "Infinity", "-Infinity"]);

function baseJson(format: ValueFormat, typeName: string, text: string): string {
  switch (format) {
    case "integer":
      if (!INTEGER.test(text)) throw new ColumnValueError(typeName, text, "not an integer");
      return text;
    case "float":
      if (FLOAT_WORDS.has(text)) return `"${text}"`;
      if (!JSON_NUMBER.test(text)) throw new ColumnValueError(typeName, text, "not a number");
      return text;
    case "boolean":
      if (text === "t") return "true";
      if (text === "f") return "false";
      throw new ColumnValueError(typeName, text, "a boolean prints as t or f");
    case "json":
      return text;
    case "bytea":
      return `"${byteaBytes(typeName, text).toString("base64")}"`;
    case "timestamptz":
      return utcTimestampJson(text) ?? JSON.stringify(isoDateTime(format, typeName, text));
    case "date":
    case "timestamp":
      return JSON.stringify(isoDateTime(format, typeName, text));
    case "string":
      return JSON.stringify(text);
  }
}

const BYTEA_HEX = /^\\x(?:[0-9a-fA-F]{2})*$/;

/** bytea_output=hex; the escape format is read too, in case a session runs without the setting. */
function byteaBytes(typeName: string, text: string): Buffer {
  if (text.startsWith("\\x")) {
    if (!BYTEA_HEX.test(text)) throw new ColumnValueError(typeName, text, "malformed hex bytea");
    return Buffer.from(text.slice(2), "hex");
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code !== 0x5c) {
      if (code > 0x7e) throw new ColumnValueError(typeName, text, "escape-format bytea holds only ASCII");
      bytes.push(code);
    } else if (text[i + 1] === "\\") {
      bytes.push(0x5c);
      i += 1;
    } else if (/^[0-3][0-7]{2}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      throw new ColumnValueError(typeName, text, "malformed escape-format bytea");
    }
  }
  return Buffer.from(bytes);
}

/** DateStyle=ISO: `YYYY-MM-DD[ HH:MM:SS[.f]][±HH[:MM[:SS]]][ BC]`. */
const ISO_DATE_TIME = /^([0-9]{4,})-([0-9]{2}-[0-9]{2})(?: ([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?))?([+-][0-9]{2}(?::[0-9]{2}){0,2})?( BC)?$/;

function isoDateTime(format: "date" | "timestamp" | "timestamptz", typeName: string, text: string): string {
  if (text === "infinity" || text === "-infinity") return text;
  const match = ISO_DATE_TIME.exec(text);
  const [, year, monthDay, time, offset, bc] = match ?? [];
  const shaped =
    match !== null &&
    (format === "date" ? time === undefined && offset === undefined : time !== undefined) &&
    (format === "timestamptz") === (offset !== undefined);
  if (!shaped) throw new ColumnValueError(typeName, text, "not the DateStyle=ISO output");
  const date = `${bc === undefined ? year : astronomicalYear(year!)}-${monthDay}`;
  if (format === "date") return date;
  return `${date}T${time}${format === "timestamptz" ? isoOffset(offset!) : ""}`;
}

const isDigit = (code: number): boolean => code >= 0x30 && code <= 0x39;

/**
 * The timestamptz text nearly every value has (TimeZone=UTC, a four-digit
 * year AD): `YYYY-MM-DD HH:MM:SS[.f…]+00` → `"YYYY-MM-DDTHH:MM:SS[.f…]Z"`,
 * checked character by character; null for any other text, which
 * isoDateTime reads (or refuses). The same result as isoDateTime's.
 */
function utcTimestampJson(text: string): string | null {
  const n = text.length;
  if (n < 22 || text.charCodeAt(n - 3) !== 0x2b /* + */ || text.charCodeAt(n - 2) !== 0x30 || text.charCodeAt(n - 1) !== 0x30) return null;
  for (let i = 0; i < 19; i++) {
    const code = text.charCodeAt(i);
    const ok = i === 4 || i === 7 ? code === 0x2d /* - */ : i === 10 ? code === 0x20 : i === 13 || i === 16 ? code === 0x3a /* : */ : isDigit(code);
    if (!ok) return null;
  }
  if (n > 22) {
    if (text.charCodeAt(19) !== 0x2e /* . */ || n === 23) return null;
    for (let i = 20; i < n - 3; i++) if (!isDigit(text.charCodeAt(i))) return null;
  }
  return `"${text.slice(0, 10)}T${text.slice(11, n - 3)}Z"`;
}

/** n BC is year 1 - n: 1 BC is 0000, 44 BC is -0043 (ISO 8601 astronomical numbering). */
function astronomicalYear(bcYear: string): string {
  const year = Number(bcYear) - 1; // at most 4713 BC: exact in a JS number
  return year === 0 ? "0000" : `-${String(year).padStart(4, "0")}`;
}

/** "+00" (TimeZone=UTC) is "Z"; another session's offset stays, as ±HH:MM[:SS]. */
function isoOffset(offset: string): string {
  if (/^[+-]00(?::00){0,2}$/.test(offset)) return "Z";
  return offset.length === 3 ? `${offset}:00` : offset;
}

type ArrayType = Extract<ColumnType, { kind: "array" }>;

/** array_out's whitespace (array_isspace). */
const SPACE = new Set([" ", "\t", "\n", "\r", "\v", "\f"]);

/**
 * An array literal as array_out prints it (and array_in reads it): an
 * optional `[lo:hi]...=` bounds prefix (dropped), nested braces per dimension,
 * elements separated by the element type's delimiter, double-quoted with
 * backslash escapes when needed, unquoted NULL for a null element.
 */
function arrayJson(type: ArrayType, text: string): string {
  const fail = (why: string) => new ColumnValueError(type.name, text, why);
  const { element, delimiter } = type;
  let i = skipSpace(text, 0);
  if (text[i] === "[") {
    const equals = text.indexOf("=", i);
    if (equals < 0) throw fail("bounds prefix without '='");
    i = skipSpace(text, equals + 1);
  }
  if (text[i] !== "{") throw fail("expected '{'");
  let out = "";
  let depth = 0;
  /** "open": just after '{'; "item": after a delimiter; "next": after an element or '}'. */
  let state: "open" | "item" | "next" = "open";
  while (true) {
    i = skipSpace(text, i);
    if (i >= text.length) throw fail("unterminated array");
    const char = text[i]!;
    if (state === "next") {
      if (char === delimiter) {
        out += ",";
        state = "item";
        i += 1;
      } else if (char === "}") {
        out += "]";
        depth -= 1;
        i += 1;
        if (depth === 0) break;
      } else {
        throw fail(`expected '${delimiter}' or '}'`);
      }
    } else if (char === "{") {
      out += "[";
      depth += 1;
      state = "open";
      i += 1;
    } else if (char === "}" && state === "open") {
      out += "]";
      depth -= 1;
      state = "next";
      i += 1;
      if (depth === 0) break;
    } else {
      const item = char === '"' ? quotedElement(text, i, fail) : unquotedElement(text, i, delimiter, fail);
      out += item.value === null ? "null" : columnJson(element, item.value);
      state = "next";
      i = item.end;
    }
  }
  if (skipSpace(text, i) !== text.length) throw fail("text after the closing '}'");
  return out;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && SPACE.has(text[i]!)) i += 1;
  return i;
}

interface Element {
  value: string | null;
  end: number;
}

/** `"..."` from the opening quote: `\x` stands for x. */
function quotedElement(text: string, start: number, fail: (why: string) => Error): Element {
  let value = "";
  let from = start + 1;
  for (let i = from; i < text.length; i += 1) {
    const char = text[i];
    if (char === '"') return { value: value + text.slice(from, i), end: i + 1 };
    if (char === "\\") {
      if (i + 1 >= text.length) break;
      value += text.slice(from, i) + text[i + 1];
      i += 1;
      from = i + 1;
    }
  }
  throw fail("unterminated quoted element");
}

/** Up to the delimiter or a brace, backslash escapes read, outer whitespace trimmed; bare NULL is null. */
function unquotedElement(text: string, start: number, delimiter: string, fail: (why: string) => Error): Element {
  let value = "";
  let escaped = false;
  /** Length of `value` up to its last escaped or non-space character. */
  let kept = 0;
  let i = start;
  for (; i < text.length; i += 1) {
    const char = text[i]!;
    if (char === delimiter || char === "{" || char === "}" || char === '"') break;
    if (char === "\\") {
      if (i + 1 >= text.length) throw fail("backslash at the end");
      value += text[i + 1];
      escaped = true;
      i += 1;
      kept = value.length;
    } else {
      value += char;
      if (!SPACE.has(char)) kept = value.length;
    }
  }
  if (i === start) throw fail("empty element");
  if (text[i] === "{" || text[i] === '"') throw fail(`unexpected '${text[i]}' inside an element`);
  value = value.slice(0, kept);
  return { value: !escaped && value.toUpperCase() === "NULL" ? null : value, end: i };
}
