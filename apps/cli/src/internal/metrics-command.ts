import { connectPostgres } from "@tributary/client";
import { databaseUrl, databaseUrlOption, parse, UsageError } from "./args.ts";
import { registerDatabaseMetrics } from "./database-metrics.ts";
import { serveProcessMetrics } from "./metrics-option.ts";
import { onShutdown } from "./shutdown.ts";

const usage = `Usage: tributary metrics [--database-url URL] [--port P] [--host H]

Serves the database's Tributary figures in Prometheus' text format at
http://H:P/metrics, for operators who run no Tributary process of their own:
streams (events appended, retained, size), relay slots (active relay,
standbys, lag, retained WAL, wal_status), set-aside messages and alarms,
consumer groups (members, and per partition the committed offset, end offset
and lag), queues (ready, in flight, delayed, dead, oldest ready message,
live workers). Each scrape reads them once: the queries tributary status and
tributary groups make. README "Metrics" lists every metric.

  --database-url URL        PostgreSQL to read (default: $DATABASE_URL)
  --database-url-file PATH  or read the URL from a file (default: $DATABASE_URL_FILE)
  --port P                  TCP port (default 9464; 0 takes a free one, printed on stderr)
  --host H                  interface to listen on (default 127.0.0.1; 0.0.0.0 for every one)`;

export async function metricsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...databaseUrlOption, port: { type: "string" }, host: { type: "string" } }, usage);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${usage}`);
  const sql = connectPostgres(databaseUrl(values), { max: 2, onnotice: () => {} });
  const metrics = await serveProcessMetrics(values.port ?? "9464", values.host, "--port", (registry) => registerDatabaseMetrics(registry, sql));
  onShutdown(async () => {
    await metrics.endpoint.close();
    await sql.end({ timeout: 1 });
  });
  await new Promise<never>(() => {});
}
