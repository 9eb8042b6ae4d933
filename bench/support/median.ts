/**
 * The median every benchmark prints: the middle value, or for an even count
 * the mean of the two middle ones. (Before this module, four benchmarks took
 * the upper of the two; with the odd round counts they default to, the two
 * agree.)
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("the median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
