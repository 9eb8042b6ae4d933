/**
 * Login roles for the benchmarks' "as a granted role" runs: a writer or a
 * reader holding per-stream grants (migrations/0007_privileges.sql), so the
 * figures include what the privilege checks cost. The other runs connect as
 * the superuser, which no check or row-level security applies to.
 *
 * Benchmark scaffolding like bench_outbox: fixed names, on the benchmark's
 * own throwaway cluster.
 */
import type { Sql } from "postgres";

export type BenchRole = "bench_writer" | "bench_reader";

/**
 * Creates the role with a grant per stream (write for bench_writer, read and
 * every group for bench_reader); returns its connection URL, or null when
 * the schema has no privilege model (before migration 0007).
 */
export async function grantedRoleUrl(sql: Sql, url: string, role: BenchRole, streams: readonly string[]): Promise<string | null> {
  const [model] = await sql<{ ok: boolean }[]>`select to_regrole('tributary_writer') is not null and to_regclass('tributary.grants') is not null as ok`;
  if (!model?.ok) return null;
  const group = role === "bench_writer" ? "tributary_writer" : "tributary_reader";
  await sql`select 1 from pg_roles where rolname = ${role}`.then(async (rows) => {
    if (rows.length === 0) await sql.unsafe(`create role ${role} login in role ${group}`);
  });
  for (const stream of streams) {
    await sql`select tributary.grant_stream(${role}, ${stream}, ${role === "bench_writer" ? "write" : "read"})`;
  }
  if (role === "bench_reader") await sql`select tributary.grant_group(${role}, '*')`;
  const withRole = new URL(url);
  withRole.username = role;
  return withRole.toString();
}
