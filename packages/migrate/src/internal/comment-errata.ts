import { createHash } from "node:crypto";

/**
 * Corrections to comments of migrations that were already applied: what they
 * cite was renamed or moved (docs/ARCHITECTURE.md, "Public contracts": applied
 * migrations are never edited). Each entry gives the checksum of the file as it
 * was applied, and each corrected line as it reads now and as it was applied.
 * Putting the applied lines back must give exactly that checksum, so the
 * correction is proved comment-only by the checksum itself; a line that is not
 * a comment is refused (comment-errata.test.ts).
 */
export interface CommentErratum {
  readonly appliedChecksum: string;
  readonly lines: ReadonlyArray<readonly [current: string, applied: string]>;
}

export const commentErrata: Readonly<Record<number, CommentErratum>> = {
  1: {
    appliedChecksum: "7fbc5015a663b78083cce5444687cd59200f700e5fd5246f3536dd95464cb915",
    lines: [
      ["-- order and assigns dense offsets (docs/ARCHITECTURE.md invariants 1-3).", "-- order and assigns dense offsets (DESIGN.md invariants 1-3)."],
      ["  -- Wire format read by the relay (packages/core event-message.ts):", "  -- Wire format read by the relay (packages/wal eventMessage.ts):"],
    ],
  },
  2: {
    appliedChecksum: "a039fde51ba32aa429f74e114d593e25eca64db674519ac387115ad9faf537ae",
    lines: [["-- Consumer groups (docs/ARCHITECTURE.md invariants 8 and 9) and key-ordered reads.", "-- Consumer groups (DESIGN.md invariants 8 and 9) and key-ordered reads."]],
  },
  3: {
    appliedChecksum: "113dde0e7c631dd29ad578390812eac7b47b1aac22b624ec1024f61fd26a9016",
    lines: [["-- Queues: per-message delivery, SQS-style (docs/ARCHITECTURE.md invariant 10).", "-- Queues: per-message delivery, SQS-style (DESIGN.md invariant 10)."]],
  },
  6: {
    appliedChecksum: "a322065917d08cc32f4e752a3e8e3851aaadafedf322b4a10c07428d2de377b9",
    lines: [["-- event only when the signature verifies. Wire format (packages/core", "-- event only when the signature verifies. Wire format (packages/wal"]],
  },
};

export const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/**
 * The checksum the migration had when it was applied, if comment-errata.ts
 * corrected its comments since and putting the applied lines back gives that
 * exact file; null otherwise (the file is then judged by its own checksum).
 */
export function appliedChecksum(version: number, sql: string): string | null {
  const erratum = commentErrata[version];
  if (!erratum) return null;
  const lines = sql.split("\n");
  for (const [current, applied] of erratum.lines) {
    const at = lines.indexOf(current);
    if (at < 0 || !isComment(current) || !isComment(applied)) return null;
    lines[at] = applied;
  }
  return sha256(lines.join("\n")) === erratum.appliedChecksum ? erratum.appliedChecksum : null;
}

const isComment = (line: string) => line.trimStart().startsWith("--");
