import { createHash } from "node:crypto";

/**
 * Migrations whose comments were corrected after they were applied: what
 * they cite was renamed or moved into this repository (docs/ARCHITECTURE.md,
 * "Public contracts": applied migrations are never edited otherwise). Each
 * entry holds the checksum the file had when it was applied, and the
 * checksum of its code: the file without its full-line comments (lines whose
 * first non-blank characters are `--`), taken from the applied file. A
 * database that recorded the applied checksum still matches when the file's
 * code checksum is unchanged, so only whole-line comments can have moved; any
 * other change is still MIGRATION_CHANGED (comment-errata.test.ts).
 */
export interface CommentErratum {
  readonly appliedChecksum: string;
  readonly codeChecksum: string;
}

export const commentErrata: Readonly<Record<number, CommentErratum>> = {
  1: {
    appliedChecksum: "7fbc5015a663b78083cce5444687cd59200f700e5fd5246f3536dd95464cb915",
    codeChecksum: "6f07f446ba0d4f7ca2eb278d4e6fbcdc54aa3a2c1a630c3025fc3428f9ab31a0",
  },
  2: {
    appliedChecksum: "a039fde51ba32aa429f74e114d593e25eca64db674519ac387115ad9faf537ae",
    codeChecksum: "7c140c15fc7a885c968db494ef0dd7ecaa14d3cf54e1f4e8ccdc3ef4d66d9ade",
  },
  3: {
    appliedChecksum: "113dde0e7c631dd29ad578390812eac7b47b1aac22b624ec1024f61fd26a9016",
    codeChecksum: "551ab4d1fc078e56e8a4569a579cab88a65b58a119162eca6ab41a7836ccbcf4",
  },
  6: {
    appliedChecksum: "a322065917d08cc32f4e752a3e8e3851aaadafedf322b4a10c07428d2de377b9",
    codeChecksum: "327d9d52ca80bb6baa6309032d3880892b799be498dc0787fa0e72a608666e9a",
  },
};

export const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** The file without its full-line comments. */
export const codeOf = (sql: string): string =>
  sql
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("--"))
    .join("\n");

/**
 * The checksum the migration had when it was applied, if comment-errata.ts
 * lists it and its code is the applied file's; null otherwise (the file is
 * then judged by its own checksum).
 */
export function appliedChecksum(version: number, sql: string): string | null {
  const erratum = commentErrata[version];
  if (!erratum) return null;
  return sha256(codeOf(sql)) === erratum.codeChecksum ? erratum.appliedChecksum : null;
}
