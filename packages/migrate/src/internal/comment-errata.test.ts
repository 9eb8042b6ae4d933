import { describe, expect, it } from "vitest";
import { appliedChecksum, commentErrata } from "./comment-errata.ts";
import { readMigrations } from "./migrations.ts";

describe("comment errata", () => {
  const files = new Map(readMigrations().map((f) => [f.version, f]));

  it("each corrected migration keeps the applied file's code and is accepted with the checksum it was applied with", () => {
    for (const [version, erratum] of Object.entries(commentErrata)) {
      const file = files.get(Number(version));
      expect(file, `migration ${version}`).toBeDefined();
      expect(file!.checksum, `migration ${version} was corrected`).not.toBe(erratum.appliedChecksum);
      expect(appliedChecksum(file!.version, file!.sql), `migration ${version}`).toBe(erratum.appliedChecksum);
    }
  });

  it("accepts a changed whole-line comment and refuses any other change", () => {
    const file = files.get(1)!;
    expect(appliedChecksum(1, file.sql.replace("\n--", "\n-- another correction\n--"))).toBe(commentErrata[1]!.appliedChecksum);
    // A statement's whitespace, a comment at the end of a line of code, a migration without errata.
    expect(appliedChecksum(1, file.sql.replace("create table tributary.streams (", "create table tributary.streams  ("))).toBeNull();
    expect(appliedChecksum(1, file.sql.replace("create table tributary.streams (", "create table tributary.streams ( -- x"))).toBeNull();
    expect(appliedChecksum(4, files.get(4)!.sql)).toBeNull();
  });
});
