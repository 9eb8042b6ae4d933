/**
 * Every PostgreSQL connection Tributary opens goes through here, so that TLS
 * verification and the password are the same for the SQL pool (postgres.js)
 * and the replication connection (node-postgres): one parse of the URL
 * (database-url.ts), explicit TLS options for each driver.
 */
import type { ConnectionOptions } from "node:tls";
import postgres, { type Options, type Sql } from "postgres";
import { parseDatabaseUrl } from "./database-url.ts";
import { noDelaySockets, type SocketFactory } from "./no-delay-socket.ts";

/** postgres.js's `socket` option (documented in its README, missing from its types). */
type WithSocket = Options<{}> & { socket?: SocketFactory };

/**
 * postgres.js on `url`, with the URL's TLS parameters and password applied as
 * libpq would, on TCP_NODELAY sockets (no-delay-socket.ts); `options` as for
 * postgres() (a `socket` given there is used instead).
 */
export function connectPostgres(url: string, options: Options<{}> = {}): Sql {
  const target = parseDatabaseUrl(url);
  const ssl = target.tls.kind === "disable" ? false : target.tls.kind === "prefer" ? "prefer" : target.tls.options;
  const withSocket: WithSocket = {
    socket: noDelaySockets(),
    ...options,
    ssl,
    ...(target.password !== undefined ? { pass: target.password } : {}),
  };
  return postgres(target.driverUrl, withSocket);
}

/** The subset of node-postgres's ClientConfig we fill (so this package need not depend on pg). */
export interface PgClientConfig {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  ssl: false | ConnectionOptions;
  options?: string;
  application_name?: string;
}

/**
 * A node-postgres config for `url`. node-postgres cannot fall back from TLS to
 * plaintext, so for sslmode=prefer/allow the caller says whether TLS is
 * available (`preferTls`: e.g. whether its postgres.js session to the same
 * server is encrypted, see sessionUsesTls).
 */
export function pgClientConfig(url: string, { preferTls = false }: { preferTls?: boolean } = {}): PgClientConfig {
  const target = parseDatabaseUrl(url);
  const ssl = target.tls.kind === "tls" ? target.tls.options : target.tls.kind === "prefer" && preferTls ? { rejectUnauthorized: false } : false;
  return {
    host: target.host,
    port: target.port,
    database: target.database,
    user: target.user,
    ...(target.password !== undefined ? { password: target.password } : {}),
    ssl,
    ...(target.parameters.options !== undefined ? { options: target.parameters.options } : {}),
    ...(target.parameters.application_name !== undefined ? { application_name: target.parameters.application_name } : {}),
  };
}

/** Whether this postgres.js session reached the server over TLS (what sslmode=prefer settled on). */
export async function sessionUsesTls(sql: Sql<any>): Promise<boolean> {
  const [row] = await sql<{ ssl: boolean }[]>`select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
  return row?.ssl === true;
}
