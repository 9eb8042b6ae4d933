import { describe, expect, it } from "vitest";
import { appliedChecksum, commentErrata } from "./comment-errata.ts";
import { readMigrations } from "./migrations.ts";

describe("comment errata", () => {
  const files = new Map(readMigrations().map((f) => [f.version, f]));

  it("putting each migration's applied comment lines back gives the checksum it was applied with", () => {
    for (const [version, erratum] of Object.entries(commentErrata)) {
      const file = files.get(Number(version));
      expect(file, `migration ${version}`).toBeDefined();
      expect(file!.checksum, `migration ${version} was corrected`).not.toBe(erratum.appliedChecksum);
      expect(appliedChecksum(file!.version, file!.sql), `migration ${version}`).toBe(erratum.appliedChecksum);
    }
  });

  it("refuses anything but the exact corrected comments", () => {
    const file = files.get(1)!;
    // Any other change to the file (here one statement's whitespace) no longer gives the applied checksum.
    expect(appliedChecksum(1, file.sql.replace("create table tributary.streams (", "create table tributary.streams  ("))).toBeNull();
    // A corrected line that is missing, or a migration without errata.
    expect(appliedChecksum(1, "create table t (x int);\n")).toBeNull();
    expect(appliedChecksum(4, files.get(4)!.sql)).toBeNull();
  });
});
