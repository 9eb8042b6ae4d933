/**
 * Log sequence numbers as a value type: a 64-bit bigint (compared with < and
 * >) with parse/format. PostgreSQL prints them as two hex halves "X/Y".
 */
export type Lsn = bigint;

export const Lsn = {
  parse(text: string): Lsn {
    const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
    if (!match) throw new Error(`not an LSN: ${JSON.stringify(text)} (expected hex "X/Y", e.g. "0/16B3748")`);
    return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
  },

  format(lsn: Lsn): string {
    return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
  },
};
