/** Plain-text tables for people (the --json output is for programs). */

/** Indented rows under a header, each column as wide as its widest cell; `align` is l/r per column. */
export function columns(header: string[], rows: string[][], align: string): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    "  " + cells.map((c, i) => (i === cells.length - 1 ? c : align[i] === "r" ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  return [line(header), ...rows.map(line)];
}
