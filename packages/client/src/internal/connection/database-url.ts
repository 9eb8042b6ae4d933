/**
 * A PostgreSQL URL read the way libpq reads it, once, for every driver
 * Tributary uses (postgres.js for SQL, node-postgres for replication), so
 * that `sslmode`, `sslrootcert`, `sslcert`, `sslkey` and the password mean the
 * same thing on every connection.
 *
 * The drivers disagree on these parameters: postgres.js ignores
 * `sslrootcert` and sends it to the server as a setting (which the server
 * rejects), and treats verify-ca as verify-full; node-postgres treats prefer,
 * require and verify-ca as verify-full. So we resolve the parameters here and
 * hand each driver explicit TLS options (see connect.ts), with the libpq
 * parameters removed from what the driver sees.
 *
 * Secrets: nothing here puts a password or the URL into an error message.
 */
import { readFileSync, statSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import { checkServerIdentity, type ConnectionOptions } from "node:tls";
import { passwordFromPassFile } from "./pgpass.ts";
import { TributaryConnectionError } from "../errors.ts";

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
const sslModes: readonly SslMode[] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/**
 * What TLS a connection uses. `prefer` (libpq's default, and `allow`): TLS if
 * the server offers it, unverified, else plaintext. `tls`: TLS is required,
 * with these options (verification included).
 */
export type TlsPolicy = { readonly kind: "disable" } | { readonly kind: "prefer" } | { readonly kind: "tls"; readonly mode: SslMode; readonly options: ConnectionOptions };

export interface DatabaseTarget {
  /** The URL without the password and without the libpq TLS parameters (safe to hand to postgres.js). */
  readonly driverUrl: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** From the URL, else PGPASSWORD, else the password file (PGPASSFILE or ~/.pgpass); undefined if none. */
  readonly password: string | undefined;
  readonly tls: TlsPolicy;
  /** Other query parameters (application_name, options, …) as given. */
  readonly parameters: Readonly<Record<string, string>>;
}

/** Query parameters libpq reads on the client side: never sent to the server as settings. */
const clientSideParameters = new Set(["sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "password", "ssl"]);

export function parseDatabaseUrl(url: string, env: NodeJS.ProcessEnv = process.env): DatabaseTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // URL's own error carries the input (and so the password): say what is wrong without it.
    const multiHost = /^[a-z]+:\/\/[^/?]*,/i.test(url) ? " (several hosts in one URL are not supported)" : "";
    throw new TributaryConnectionError("INVALID_URL", `the database URL is not a valid URL${multiHost}: expected postgres://user@host:5432/database[?sslmode=verify-full&sslrootcert=ca.pem]`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new TributaryConnectionError("INVALID_URL", `the database URL starts with '${parsed.protocol}//': expected postgres:// or postgresql://`);
  }
  const query = Object.fromEntries(parsed.searchParams);
  const host = query.host ?? (decodeURIComponent(parsed.hostname).replace(/^\[(.*)\]$/, "$1") || env.PGHOST || "localhost");
  const port = Number(query.port ?? (parsed.port || env.PGPORT || 5432));
  const user = query.user ?? (decodeURIComponent(parsed.username) || env.PGUSER || userInfo().username);
  const database = query.dbname ?? (decodeURIComponent(parsed.pathname.slice(1)) || env.PGDATABASE || user);
  const password = (decodeURIComponent(parsed.password) || query.password) ?? env.PGPASSWORD ??
    passwordFromPassFile(env.PGPASSFILE ?? join(homedir(), ".pgpass"), { host, port, database, user }, env.PGPASSFILE !== undefined);

  const driver = new URL(parsed.href);
  driver.password = "";
  for (const name of clientSideParameters) driver.searchParams.delete(name);
  const parameters = Object.fromEntries(Object.entries(query).filter(([name]) => !clientSideParameters.has(name)));

  return { driverUrl: driver.href, host, port, database, user, password: password || undefined, tls: tlsPolicy(query, env, host), parameters };
}

function tlsPolicy(query: Record<string, string>, env: NodeJS.ProcessEnv, host: string): TlsPolicy {
  const given = query.sslmode ?? legacySsl(query.ssl) ?? env.PGSSLMODE ?? "prefer";
  if (!sslModes.includes(given as SslMode)) {
    throw new TributaryConnectionError("INVALID_SSLMODE", `sslmode=${given} is not a TLS mode: use disable, allow, prefer, require, verify-ca or verify-full`);
  }
  let mode = given as SslMode;
  const rootCertSource = query.sslrootcert !== undefined ? "sslrootcert" : "PGSSLROOTCERT";
  const rootCert = query.sslrootcert ?? env.PGSSLROOTCERT;
  if (mode === "disable") return { kind: "disable" };
  if (mode === "allow" || mode === "prefer") return { kind: "prefer" };
  // libpq: sslmode=require with a root certificate behaves like verify-ca.
  if (mode === "require" && rootCert !== undefined) mode = "verify-ca";

  const options: ConnectionOptions = { ...clientCertificate(query, env) };
  if (mode === "require") return { kind: "tls", mode, options: { ...options, rejectUnauthorized: false } };

  const ca = rootCertificates(rootCert, rootCertSource, mode);
  return {
    kind: "tls",
    mode,
    options: {
      ...options,
      ...(ca !== undefined ? { ca } : {}),
      rejectUnauthorized: true,
      // verify-ca: the chain must lead to the CA, whatever name the certificate carries.
      // verify-full: the certificate must name the host of the URL. Pinned here because
      // postgres.js gives Node no host name for an IP address, and Node then checks "localhost".
      checkServerIdentity: mode === "verify-ca" ? () => undefined : (_name, cert) => checkServerIdentity(host, cert),
    },
  };
}

/** postgres.js's own `?ssl=` spelling, read as the sslmode it means. */
function legacySsl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === "true" || value === "1") return "require";
  if (value === "false" || value === "0") return "disable";
  return value;
}

/** The CA certificates to verify against: a file, `system` (Node's bundled CAs), or libpq's default ~/.postgresql/root.crt. */
function rootCertificates(path: string | undefined, source: string, mode: SslMode): string | undefined {
  if (path === "system") return undefined;
  if (path === undefined) {
    const fallback = join(homedir(), ".postgresql", "root.crt");
    if (!isFile(fallback)) {
      throw new TributaryConnectionError("NO_ROOT_CERT",
        `sslmode=${mode} needs the CA that signed the server's certificate: add sslrootcert=/path/to/ca.pem to the URL ` +
        `(or set PGSSLROOTCERT; sslrootcert=system uses the system's CAs); ${fallback} does not exist`);
    }
    return readPem(fallback, "sslrootcert (default)", "CA");
  }
  return readPem(path, source, "CA");
}

function clientCertificate(query: Record<string, string>, env: NodeJS.ProcessEnv): ConnectionOptions {
  const certPath = query.sslcert ?? env.PGSSLCERT;
  const keyPath = query.sslkey ?? env.PGSSLKEY;
  return {
    ...(certPath !== undefined ? { cert: readPem(certPath, query.sslcert !== undefined ? "sslcert" : "PGSSLCERT", "client certificate") } : {}),
    ...(keyPath !== undefined ? { key: readPem(keyPath, query.sslkey !== undefined ? "sslkey" : "PGSSLKEY", "client key") } : {}),
  };
}

function readPem(path: string, parameter: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new TributaryConnectionError("UNREADABLE_FILE", `${parameter}=${path}: cannot read the ${what} file (${reason}); give the path of a readable PEM file`);
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
