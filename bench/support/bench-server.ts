/**
 * The PostgreSQL a benchmark runs against: a throwaway cluster from the
 * testkit, and the facts a report needs about it (version, the settings that
 * change the figures, the postmaster's pid for CPU accounting).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Sql } from "postgres";
import { Cluster, findInstallation, type ServerKind } from "@tributary/testkit";

/** Debian's pg_recvlogical 15; it also speaks to a PostgreSQL 18 server. */
export const PG_RECVLOGICAL = "/usr/lib/postgresql/15/bin/pg_recvlogical";

export async function startBenchServer(kind: ServerKind, settings: Record<string, string>): Promise<Cluster> {
  const installation = findInstallation(kind);
  if ("missing" in installation) throw new Error(`cannot run the benchmark on ${kind}: ${installation.missing}`);
  return Cluster.start(installation, { settings });
}

export function postmasterPid(cluster: Cluster): number {
  return Number(readFileSync(join(cluster.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

/** One line naming the server and the settings that move the figures. */
export async function describeServer(sql: Sql): Promise<string> {
  const rows = await sql<{ name: string; setting: string; unit: string | null }[]>`
    select name, setting, unit from pg_settings
     where name in ('server_version', 'fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers',
                    'max_wal_size', 'wal_compression')`;
  const get = (name: string) => rows.find((r) => r.name === name);
  const sharedBuffers = Number(get("shared_buffers")?.setting ?? 0) * 8 / 1024;
  return [
    `PostgreSQL ${get("server_version")?.setting}`,
    `fsync=${get("fsync")?.setting}`,
    `full_page_writes=${get("full_page_writes")?.setting}`,
    `synchronous_commit=${get("synchronous_commit")?.setting}`,
    `shared_buffers=${sharedBuffers}MB`,
    `max_wal_size=${get("max_wal_size")?.setting}${get("max_wal_size")?.unit ?? ""}`,
    `wal_compression=${get("wal_compression")?.setting}`,
  ].join(", ");
}

export async function currentWalLsn(sql: Sql): Promise<string> {
  const [row] = await sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
  return row!.lsn;
}

export async function walBytesBetween(sql: Sql, from: string, to: string): Promise<number> {
  const [row] = await sql<{ bytes: string }[]>`select pg_wal_lsn_diff(${to}::pg_lsn, ${from}::pg_lsn)::text as bytes`;
  return Number(row!.bytes);
}
