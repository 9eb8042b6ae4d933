/** Plain-text tables for benchmark reports (monospace, pipe-separated, easy to paste). */

/** Columns in `leftColumns` (default: the first) are left-aligned text; the others right-aligned numbers. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, leftColumns: readonly number[] = [0]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const left = (c: number) => leftColumns.includes(c);
  const line = (cells: readonly string[]) =>
    "| " + cells.map((cell, c) => (left(c) ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(" | ") + " |";
  const rule = "|" + widths.map((w, c) => (left(c) ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(header), rule, ...rows.map((r) => line(header.map((_, c) => r[c] ?? "")))].join("\n");
}

export const fmt = {
  int: (n: number) => Math.round(n).toLocaleString("en-US"),
  fixed: (n: number, digits = 1) => n.toFixed(digits),
  mb: (bytes: number) => `${(bytes / (1 << 20)).toFixed(1)} MB`,
  pct: (share: number) => `${(share * 100).toFixed(1)}%`,
};

/** A progress line on stderr, so stdout keeps only the report. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
