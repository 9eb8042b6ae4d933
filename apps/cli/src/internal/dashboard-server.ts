/**
 * The dashboard's HTTP server (README "Dashboard"; docs/ARCHITECTURE.md
 * "Dashboard"). One reader polls the database every interval through the
 * reads `tributary status`, `tributary groups` and `tributary queues` make
 * (readStatus, describeGroups, listDeadLetters) and pushes each snapshot to
 * every open page over Server-Sent Events; the page draws it (dashboard/).
 * A bounded history of the figures the charts need stays here, so a page
 * opened late starts with its charts filled.
 *
 * Reads are open to whoever reaches the port, which is 127.0.0.1 unless told
 * otherwise; requests naming another host are refused there (a web page that
 * rebinds its own name to 127.0.0.1 must not read them). The one write, a
 * redrive of dead letters, is off unless the command was given
 * --allow-redrive, and then needs the token printed with the URL, in a
 * header no other site's page can send.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Sql } from "postgres";
import { describeGroups, listDeadLetters, redriveDeadLetters, TributaryQueueError, type GroupDescription } from "@tributary/client";
import type { SlotAlarmSettings } from "@tributary/client/internals";
import { cliMessage } from "./cli-errors.ts";
import { readStatus, type Status } from "./status-query.ts";

export interface DashboardOptions {
  readonly sql: Sql;
  readonly port: number;
  /** Interface to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** How often the database is read and pages updated. */
  readonly intervalMs: number;
  /** Whether the page may redrive dead letters (with the token). */
  readonly allowRedrive: boolean;
  readonly alarmSettings: SlotAlarmSettings;
  /** Points of history kept for the charts (default: 30 minutes of intervals). */
  readonly historyPoints?: number;
}

export interface Dashboard {
  /** The page's address; with redrive on, the token rides in its fragment (#token=…), which browsers never send. */
  readonly url: string;
  close(): Promise<void>;
}

/** What the charts draw, per snapshot: small enough to keep 30 minutes of. */
export interface HistoryPoint {
  /** Milliseconds since the epoch, by this process's clock. */
  readonly at: number;
  readonly streams: Record<string, number>;
  readonly relays: Record<string, { lagBytes: number | null; lagSeconds: number | null; retainedBytes: number | null }>;
  readonly groups: Record<string, number>;
  readonly queues: Record<string, { ready: number; inFlight: number; delayed: number; dead: number }>;
}

export type Snapshot =
  | { readonly at: number; readonly ok: true; readonly status: Status; readonly groups: readonly GroupDescription[]; readonly point: HistoryPoint }
  | { readonly at: number; readonly ok: false; readonly error: string };

/** A dashboard port that cannot be listened on: says which and what to do. */
export class DashboardPortError extends Error {
  override readonly name = "DashboardPortError";
}

const ASSETS: Record<string, { file: URL | (() => string); type: string }> = {
  "/": { file: new URL("../../dashboard/index.html", import.meta.url), type: "text/html; charset=utf-8" },
  "/dashboard.js": { file: new URL("../../dashboard/dashboard.js", import.meta.url), type: "text/javascript; charset=utf-8" },
  "/dashboard.css": { file: new URL("../../dashboard/dashboard.css", import.meta.url), type: "text/css; charset=utf-8" },
  "/uPlot.js": { file: () => createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"), type: "text/javascript; charset=utf-8" },
  "/uPlot.css": { file: () => createRequire(import.meta.url).resolve("uplot/dist/uPlot.min.css"), type: "text/css; charset=utf-8" },
};

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

function pointOf(at: number, status: Status, groups: readonly GroupDescription[]): HistoryPoint {
  return {
    at,
    streams: Object.fromEntries(status.streams.map((s) => [s.stream, s.events])),
    relays: Object.fromEntries(status.relays.map((r) => [r.slot, { lagBytes: r.lagBytes, lagSeconds: r.lagSeconds, retainedBytes: r.walRetainedBytes }])),
    groups: Object.fromEntries(groups.map((g) => [g.group, g.lag])),
    queues: Object.fromEntries((status.queues ?? []).map((q) => [q.queue, { ready: q.ready, inFlight: q.inFlight, delayed: q.delayed, dead: q.dead }])),
  };
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" }).end(JSON.stringify(body));
}

async function readBody(request: IncomingMessage, limit: number): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error(`a request body is at most ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? "127.0.0.1";
  const loopback = LOOPBACK_HOSTS.has(host);
  const token = options.allowRedrive ? randomBytes(24).toString("base64url") : null;
  const historyPoints = options.historyPoints ?? Math.ceil(30 * 60_000 / options.intervalMs);
  const history: HistoryPoint[] = [];
  const pages = new Set<ServerResponse>();
  let latest: Snapshot | null = null;
  const stop = new AbortController();

  const send = (page: ServerResponse, event: string, data: unknown) => page.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

  const readOnce = async (): Promise<Snapshot> => {
    try {
      const status = await readStatus(options.sql, options.alarmSettings);
      const groups = await describeGroups(options.sql);
      const at = Date.now();
      return { at, ok: true, status, groups, point: pointOf(at, status, groups) };
    } catch (error) {
      return { at: Date.now(), ok: false, error: cliMessage(error) };
    }
  };

  // One reader for every page: a bounded number of queries per interval, however many are open.
  const poller = (async () => {
    while (!stop.signal.aborted) {
      const snapshot = await readOnce();
      if (stop.signal.aborted) break;
      latest = snapshot;
      if (snapshot.ok) {
        history.push(snapshot.point);
        if (history.length > historyPoints) history.splice(0, history.length - historyPoints);
      }
      for (const page of pages) send(page, "snapshot", snapshot);
      await sleep(options.intervalMs, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  })();

  const assetCache = new Map<string, Buffer>();
  const asset = async (path: string): Promise<Buffer | null> => {
    const entry = ASSETS[path];
    if (!entry) return null;
    let body = assetCache.get(path);
    if (!body) {
      body = await readFile(typeof entry.file === "function" ? entry.file() : entry.file);
      assetCache.set(path, body);
    }
    return body;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? "/", "http://dashboard");
    if (loopback) {
      const hostname = (request.headers.host ?? "").replace(/:\d+$/, "");
      if (!LOOPBACK_HOSTS.has(hostname)) {
        response.writeHead(403, { "content-type": "text/plain" }).end(`this dashboard answers to 127.0.0.1 or localhost, not '${hostname}'\n`);
        return;
      }
    }
    const path = url.pathname;
    if (request.method === "GET" && ASSETS[path]) {
      const body = await asset(path);
      response.writeHead(200, {
        "content-type": ASSETS[path]!.type,
        "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
      }).end(body);
      return;
    }
    if (request.method === "GET" && path === "/api/events") {
      response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
      response.write(`retry: ${Math.max(1000, options.intervalMs)}\n\n`);
      send(response, "hello", { intervalMs: options.intervalMs, redrive: options.allowRedrive, history });
      if (latest) send(response, "snapshot", latest);
      pages.add(response);
      request.on("close", () => pages.delete(response));
      return;
    }
    if (request.method === "GET" && path === "/api/snapshot") {
      json(response, 200, latest ?? await readOnce());
      return;
    }
    const dead = /^\/api\/queues\/([^/]+)\/(dead|redrive)$/.exec(path);
    if (dead) {
      const queue = decodeURIComponent(dead[1]!);
      try {
        if (dead[2] === "dead" && request.method === "GET") {
          const limit = Number(url.searchParams.get("limit") ?? 100);
          if (!(Number.isInteger(limit) && limit >= 1 && limit <= 1000)) return json(response, 400, { error: "limit must be a whole number from 1 to 1000" });
          const { total, deadLetters } = await listDeadLetters(options.sql, queue, { limit });
          return json(response, 200, { queue, total, deadLetters });
        }
        if (dead[2] === "redrive" && request.method === "POST") return await redrive(request, response, queue);
      } catch (error) {
        return json(response, error instanceof TributaryQueueError ? 400 : 500, { error: cliMessage(error) });
      }
    }
    response.writeHead(404, { "content-type": "text/plain" }).end("not a page of the Tributary dashboard\n");
  };

  const redrive = async (request: IncomingMessage, response: ServerResponse, queue: string): Promise<void> => {
    if (token === null) return json(response, 403, { error: "redrive is off: start tributary dashboard with --allow-redrive to redrive from the page" });
    const given = Buffer.from(String(request.headers["x-tributary-token"] ?? ""));
    const expected = Buffer.from(token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return json(response, 403, { error: "redrive needs the token of the URL tributary dashboard printed (open the page from that URL)" });
    }
    if (!(request.headers["content-type"] ?? "").startsWith("application/json")) return json(response, 415, { error: "send the redrive as application/json" });
    let body: { ids?: unknown; all?: unknown };
    try {
      body = JSON.parse(await readBody(request, 1_000_000)) as typeof body;
    } catch (error) {
      return json(response, 400, { error: `the redrive's body is not JSON: ${(error as Error).message}` });
    }
    const all = body.all === true;
    const ids = Array.isArray(body.ids) ? body.ids.map(String) : [];
    if (all === (ids.length > 0) || !ids.every((id) => /^[0-9]{1,19}$/.test(id))) {
      return json(response, 400, { error: 'say which dead letters to redrive: {"ids": ["12", …]} or {"all": true}' });
    }
    const result = await redriveDeadLetters(options.sql, queue, all ? undefined : ids);
    json(response, 200, result);
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) json(response, 500, { error: cliMessage(error) });
      else response.end();
    });
  });
  server.keepAliveTimeout = 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => {
        const why = error.code === "EADDRINUSE" ? "is in use by another process: choose another port"
          : error.code === "EACCES" ? "needs privileges this process does not have: choose a port above 1023"
          : error.code === "EADDRNOTAVAIL" ? "names an address this machine does not have: use 127.0.0.1, 0.0.0.0 or one of its own"
          : `could not be listened on (${error.message})`;
        reject(new DashboardPortError(`the dashboard's address ${host}:${options.port} ${why}`));
      });
      server.listen(options.port, host, () => resolve());
    });
  } catch (error) {
    stop.abort();
    await poller;
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/${token === null ? "" : `#token=${token}`}`,
    close: async () => {
      stop.abort();
      for (const page of pages) page.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await poller;
    },
  };
}
