/**
 * `--metrics-port` / `--metrics-host` of the long-running commands: a
 * prom-client registry with the process's own default metrics (CPU, memory,
 * event loop), served at /metrics (README "Metrics").
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import { serveMetrics, type MetricsEndpoint } from "@tributary/core";
import { UsageError } from "./args.ts";

export const metricsOptions = { "metrics-port": { type: "string" }, "metrics-host": { type: "string" } } as const;

export const metricsUsage = `  --metrics-port PORT       serve Prometheus metrics at http://HOST:PORT/metrics
                            (default: none)
  --metrics-host HOST       interface of --metrics-port (default 127.0.0.1;
                            0.0.0.0 for every interface)`;

export interface CommandMetrics {
  readonly registry: Registry;
  readonly endpoint: MetricsEndpoint;
}

/** The registry and its endpoint when --metrics-port is given, else null. */
export async function startMetrics(values: { "metrics-port"?: string | boolean | undefined; "metrics-host"?: string | boolean | undefined }): Promise<CommandMetrics | null> {
  const raw = values["metrics-port"];
  if (raw === undefined) {
    if (values["metrics-host"] !== undefined) throw new UsageError("--metrics-host needs --metrics-port");
    return null;
  }
  const host = typeof values["metrics-host"] === "string" ? values["metrics-host"] : undefined;
  return serveProcessMetrics(raw, host, "--metrics-port");
}

/**
 * A registry with the process's default metrics and what `register` adds,
 * served on `rawPort` (`flag` names it in the error of a bad one).
 */
export async function serveProcessMetrics(rawPort: string | boolean, host: string | undefined, flag: string, register?: (registry: Registry) => void): Promise<CommandMetrics> {
  const port = Number(rawPort);
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new UsageError(`${flag} must be a TCP port (0-65535; 0 takes a free one), not '${String(rawPort)}'`);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names three gauges with a counter's suffix, which Prometheus'
  // naming rules (promtool check metrics) refuse; each has a twin without it.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);
  register?.(registry);
  const endpoint = await serveMetrics(registry, { port, ...(host ? { host } : {}) });
  console.error(`metrics at ${endpoint.url}`);
  return { registry, endpoint };
}
