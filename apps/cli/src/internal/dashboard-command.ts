/**
 * `tributary dashboard`: a live web page of the database's streams, relays,
 * groups, queues and alarms, with dead letters to browse and redrive
 * (dashboard-server.ts; README "Dashboard").
 */
import { connectPostgres } from "@tributary/client";
import { alarmOptions, alarmSettings, alarmUsage } from "./alarm-options.ts";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { startDashboard } from "./dashboard-server.ts";
import { onShutdown } from "./shutdown.ts";

/** The dashboard's default port: next to the metrics exporter's 9464. */
export const DEFAULT_DASHBOARD_PORT = 9470;

const usage = `Usage: tributary dashboard [--database-url URL] [--port P] [--host H] [--interval S] [--allow-redrive]

Serves a web page at http://H:P/ that updates itself every interval: streams
with their ingest rate, each relay slot (active or standby, lag, retained
WAL), consumer groups with their lag per partition and members, queues with
their depth, in flight, dead letters and workers, and alarms. A queue's dead
letters can be browsed; with --allow-redrive also redriven from the page,
which then needs the token printed with the URL. The page reads what
tributary status, groups and queues read, once per interval whatever the
number of open pages.

  --database-url URL        PostgreSQL to show (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --port P                  TCP port (default ${DEFAULT_DASHBOARD_PORT}; 0 takes a free one)
  --host H                  interface to listen on (default 127.0.0.1; anyone who
                            reaches it reads the figures and payloads of dead letters)
  --interval S              seconds between updates (default 2)
  --allow-redrive           let the page redrive dead letters (with the printed token)
${alarmUsage}`;

export function parseDashboardPort(raw: string, flag: string): number {
  const port = Number(raw);
  if (!(/^[0-9]+$/.test(raw) && port <= 65535)) throw new UsageError(`${flag} must be a TCP port (0-65535; 0 takes a free one), not '${raw}'`);
  return port;
}

export async function dashboardCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    ...databaseUrlOption,
    port: { type: "string" },
    host: { type: "string" },
    interval: { type: "string" },
    "allow-redrive": { type: "boolean" },
    ...alarmOptions,
  }, usage);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${usage}`);
  const port = parseDashboardPort(values.port ?? String(DEFAULT_DASHBOARD_PORT), "--port");
  const interval = Number(values.interval ?? 2);
  if (!(Number.isFinite(interval) && interval >= 0.1 && interval <= 3600)) throw new UsageError(`--interval must be seconds from 0.1 to 3600, not '${values.interval}'`);
  const settings = alarmSettings(values);
  const sql = connectPostgres(databaseUrl(values), { max: 2, onnotice: () => {} });
  const dashboard = await startDashboard({
    sql, port, ...(values.host ? { host: values.host } : {}), intervalMs: interval * 1000,
    allowRedrive: values["allow-redrive"] === true, alarmSettings: settings,
  }).catch(async (error: unknown) => {
    await sql.end({ timeout: 1 });
    throw error;
  });
  console.error(`dashboard at ${dashboard.url}`);
  onShutdown(async () => {
    await dashboard.close();
    await sql.end({ timeout: 1 });
  });
  await new Promise<never>(() => {});
}
