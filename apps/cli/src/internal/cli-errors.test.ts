import { describe, expect, it } from "vitest";
import { MigrationError } from "@tributary/migrate";
import { TributaryReadError } from "@tributary/client";
import { cliMessage, inCliTerms } from "./cli-errors.ts";

describe("library errors in the CLI's terms", () => {
  it("says an API option as its flag, by the error's code", () => {
    const mismatch = new MigrationError("SLOT_PLUGIN_MISMATCH",
      `replication slot 's' uses the pgoutput decoder, not wal2json. Use decoder: "pgoutput" (a slot's decoder is fixed when it is created).`);
    expect(cliMessage(mismatch)).toBe("replication slot 's' uses the pgoutput decoder, not wal2json. Use --decoder pgoutput (a slot's decoder is fixed when it is created).");
    const other = new MigrationError("SLOT_IN_OTHER_DATABASE", `slot names are server-wide. Give this database its own slot with slotName: "<name>".`);
    expect(cliMessage(other)).toBe("slot names are server-wide. Give this database its own slot with --slot <name>.");
    const lost = new MigrationError("SLOT_LOST", "To accept the gap: DELETE FROM tributary.relay_checkpoints WHERE slot_name = 's'; then run migrate() (@tributary/migrate).");
    expect(cliMessage(lost)).toMatch(/; then run tributary migrate\.$/);
    const unknown = new TributaryReadError("UNKNOWN_STREAM", "stream 'x' does not exist. Check the name (tributary.streams lists the streams).");
    expect(cliMessage(unknown)).toBe("stream 'x' does not exist. Check the name (`tributary status` lists the streams).");
  });

  it("leaves a phrase alone under a code whose messages do not use it, and errors without a code as they are", () => {
    expect(cliMessage(new MigrationError("MIGRATION_FAILED", `0002 failed: decoder: "x"`))).toBe(`0002 failed: decoder: "x"`);
    expect(cliMessage(new Error(`decoder: "x"`))).toBe(`decoder: "x"`);
    expect(cliMessage("not an error")).toBe("not an error");
  });

  it("says table capture's SQL hints (by their constraint name) as commands and flags", () => {
    expect(inCliTerms("To change them: SELECT tributary.uncapture('public.orders'); then capture() again with the new options.", "tributary_capture"))
      .toBe("To change them: tributary capture remove public.orders, then tributary capture add public.orders again with the new flags.");
    expect(inCliTerms(`Capture it first: SELECT tributary.capture('"Orders"');`, "tributary_capture")).toBe(`Capture it first: tributary capture add "Orders"`);
    expect(inCliTerms(`The default stream name is '<schema>.<table>'; pass one in the options: tributary.capture('x', '{"stream": "..."}')`, "tributary_capture"))
      .toBe("The default stream name is '<schema>.<table>'; pass one with --stream NAME");
    expect(inCliTerms("Call uncapture() as a role that owns x", "tributary_capture")).toBe("Connect as a role that owns x");
  });

  it("rewords a library's log line (no code) with every phrase", () => {
    expect(inCliTerms("Kafka unreachable (connect ECONNREFUSED): check kafka.brokers and the network; retrying with backoff"))
      .toBe("Kafka unreachable (connect ECONNREFUSED): check --brokers and the network; retrying with backoff");
  });
});
