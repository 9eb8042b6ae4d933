/**
 * The libraries' errors in the CLI's terms. A library message says what to do
 * with the library's API: an option as it is written in code
 * (`decoder: "pgoutput"`, `slotName: "<name>"`, `kafka.brokers`), a function
 * (`migrate() (@tributary/migrate)`), a table (`tributary.streams`). A CLI
 * user sets flags and runs commands instead. By error code, each phrase a
 * library message of that code uses, and what the CLI says for it; text of
 * any other code is left as it is. A rule of the SQL API that no library
 * error wraps (table capture's) goes by its constraint name instead.
 */

interface Rewording {
  /** The errors' stable codes whose messages use the phrase. */
  readonly codes: readonly string[];
  readonly api: RegExp;
  readonly cli: string;
}

const rewordings: readonly Rewording[] = [
  // @tributary/client readers and group administration; @tributary/kafka-bridge.
  { codes: ["UNKNOWN_STREAM", "STREAM_MISSING"], api: /tributary\.streams lists the streams/g, cli: "`tributary status` lists the streams" },
  { codes: ["STREAM_MISSING"], api: /the stream names given/g, cli: "--streams" },
  { codes: ["TOPIC_MISSING"], api: /createTopics: true/g, cli: "--create-topics" },
  { codes: ["KAFKA_AUTH"], api: /kafka\.sasl \(mechanism, username and password\)/g, cli: "--sasl-mechanism, --sasl-username and --sasl-password" },
  { codes: ["KAFKA_AUTH", "KAFKA_UNREACHABLE"], api: /kafka\.ssl\.ca/g, cli: "--ssl-ca" },
  { codes: ["KAFKA_AUTH", "KAFKA_UNREACHABLE"], api: /kafka\.brokers/g, cli: "--brokers" },
  // @tributary/migrate, and the relay's set-up errors (a RelayFatalError keeps a MigrationError's code).
  { codes: ["NOT_MIGRATED", "NO_SLOT", "SLOT_LOST"], api: /migrate\(\) \(@tributary\/migrate\)/g, cli: "tributary migrate" },
  { codes: ["SLOT_IN_OTHER_DATABASE", "SECOND_SLOT"], api: /slotName: "([^"]*)"/g, cli: "--slot $1" },
  { codes: ["SLOT_PLUGIN_MISMATCH", "PLUGIN_MISSING", "PLUGIN_NOT_ALLOWED"], api: /decoder: "(\w+)"/g, cli: "--decoder $1" },
  // The hints of tributary.capture, uncapture and backfill (migrations/0009_table_capture.sql).
  {
    codes: ["tributary_capture"],
    api: /SELECT tributary\.uncapture\('((?:[^']|'')*)'\); then capture\(\) again with the new options\./g,
    cli: "tributary capture remove $1, then tributary capture add $1 again with the new flags.",
  },
  { codes: ["tributary_capture"], api: /SELECT tributary\.capture\('((?:[^']|'')*)'\);/g, cli: "tributary capture add $1" },
  { codes: ["tributary_capture"], api: /pass one in the options: tributary\.capture\('(?:[^']|'')*', '\{"stream": "\.\.\."\}'\)/g, cli: "pass one with --stream NAME" },
  { codes: ["tributary_capture"], api: /Pass another name in the stream option\./g, cli: "Pass another name with --stream." },
  { codes: ["tributary_capture"], api: /Call (?:un)?capture\(\) as a role/g, cli: "Connect as a role" },
];

/**
 * Library text in the CLI's terms: the rewordings of `code`, or, for a log
 * line (no code: a retried error the library reports as it goes on), all of them.
 */
export function inCliTerms(text: string, code?: string): string {
  return rewordings
    .filter((r) => code === undefined || r.codes.includes(code))
    .reduce((said, r) => said.replace(r.api, r.cli), text);
}

/** An error's message as the CLI prints it. */
export function cliMessage(error: unknown): string {
  const e = error as { message?: unknown; code?: unknown } | null;
  const message = typeof e?.message === "string" ? e.message : String(error);
  return typeof e?.code === "string" ? inCliTerms(message, e.code) : message;
}
