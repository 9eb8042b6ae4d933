/**
 * The `/metrics` endpoint every long-running Tributary process can serve
 * (docs/ARCHITECTURE.md "Metrics"): a prom-client registry in Prometheus'
 * text format over plain HTTP. It listens on 127.0.0.1 unless told
 * otherwise: metrics name streams, groups and queues, which is not for
 * every network to read.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

export interface MetricsEndpointOptions {
  /** TCP port; 0 takes a free one (see `url`). */
  readonly port: number;
  /** Interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface). */
  readonly host?: string;
}

export interface MetricsEndpoint {
  /** Where it listens, e.g. http://127.0.0.1:9464/metrics. */
  readonly url: string;
  close(): Promise<void>;
}

/** A port that cannot be listened on: says which and what to do. */
export class MetricsEndpointError extends Error {
  override readonly name = "MetricsEndpointError";
}

export async function serveMetrics(registry: Registry, options: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const host = options.host ?? "127.0.0.1";
  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("Tributary serves its metrics at /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": registry.contentType }).end(request.method === "HEAD" ? undefined : text),
      (error: unknown) => response.writeHead(500, { "content-type": "text/plain" }).end(`collecting the metrics failed: ${(error as Error)?.message ?? error}\n`),
    );
  });
  // A scrape is short; a client that keeps its connection open must not hold close() up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      const why = error.code === "EADDRINUSE" ? "is in use by another process: choose another port"
        : error.code === "EACCES" ? "needs privileges this process does not have: choose a port above 1023"
        : error.code === "EADDRNOTAVAIL" ? "names an address this machine does not have: use 127.0.0.1, 0.0.0.0 or one of its own"
        : `could not be listened on (${error.message})`;
      reject(new MetricsEndpointError(`the metrics endpoint ${host}:${options.port} ${why}`));
    });
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/**
 * `read`, shared by the collectors of one scrape: prom-client collects every
 * metric of a registry at once, so a read in flight (or settled in this turn
 * of the event loop) serves them all, and the next scrape reads again.
 */
export function oncePerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let current: Promise<T> | null = null;
  return () => {
    if (current) return current;
    const started = read();
    current = started;
    const forget = () => setImmediate(() => {
      if (current === started) current = null;
    });
    started.then(forget, forget);
    return started;
  };
}
