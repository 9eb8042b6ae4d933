/**
 * npm run bench:installed — the relay a user installs from npm against the
 * relay run from this clone: commit → stream lag side by side on one server.
 *
 *   1. `npm pack` every publishable workspace (built first by the npm script)
 *      and install the tarballs into a new project in a temporary folder, as
 *      a user would: dependencies from the registry, no workspace links, no
 *      patch of any dependency.
 *   2. One PostgreSQL, migrated once; a stream of 8 partitions.
 *   3. Rounds, alternating which relay goes first: start `tributary relay`
 *      (the installed project's node_modules/.bin/tributary, or this clone's
 *      apps/cli/bin/tributary.js), wait until it is active, measure the lag
 *      probe (bench/support/lag-probe.ts: paced single-event transactions,
 *      lag = the server's clock_timestamp() - committed_at when a LISTENing
 *      reader first sees the row), stop it (SIGTERM), next relay.
 *   4. One table: p50 / p99 / max per round and the median of the rounds.
 *
 * Both relays are the same compiled JavaScript; what differs is how it was
 * installed (the dependency tree npm resolves for a user against this
 * workspace's). The figure is whether a user gets the clone's latency.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { createStream } from "@tributary/client";
import { migrate } from "@tributary/migrate";
import { publishableWorkspaces, repositoryRoot, userEnvironment } from "@tributary/testkit";
import { parseBenchFlags, positiveInt, serverUsage } from "./support/bench-flags.ts";
import { describeServer, startBenchServer } from "./support/bench-server.ts";
import { loadAverage } from "./support/cpu-accounting.ts";
import { BENCH_PARTITIONS } from "./support/event-payload.ts";
import { measureLag, type LagResult } from "./support/lag-probe.ts";
import { formatTable, progress } from "./support/report-table.ts";
import { median } from "./support/median.ts";

const usage = `npm run bench:installed -- [flags]
${serverUsage}
  --rate N        events/s of the paced producer (default 200)
  --seconds N     seconds of each measurement (default 10)
  --rounds N      rounds; each measures both relays, alternating which goes first (default 4)
  --keep          keep the installed project (its folder is printed)`;

const { flags, values } = parseBenchFlags(
  process.argv.slice(2),
  {
    rate: { type: "string", default: "200" },
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "4" },
    keep: { type: "boolean", default: false },
  },
  usage,
);
const options = {
  rate: positiveInt(values.rate, "rate"),
  seconds: positiveInt(values.seconds, "seconds"),
  rounds: positiveInt(values.rounds, "rounds"),
  keep: values.keep === true,
};

const SLOT = "tributary";
const STREAM = "lag";
/** A bound on a relay's start (process, connect, take the slot) on a loaded machine. */
const RELAY_START_MS = 60_000;

/** The publishable workspaces' tarballs installed into a new project; returns its installed CLI. */
function installFromTarballs(dir: string): string {
  const names = publishableWorkspaces().map((w) => w.manifest.name);
  const packs = join(dir, "packs");
  const project = join(dir, "project");
  mkdirSync(packs);
  mkdirSync(project);
  const env = userEnvironment();
  progress(`packing ${names.join(", ")}`);
  execFileSync("npm", ["pack", ...names.flatMap((n) => ["--workspace", n]), "--pack-destination", packs, "--silent"], { cwd: repositoryRoot, env, stdio: ["ignore", "ignore", "inherit"] });
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "installed-relay-bench", private: true, type: "module" }));
  const tarballs = readdirSync(packs).map((f) => join(packs, f));
  progress(`installing ${tarballs.length} tarballs into ${project}`);
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", ...tarballs], { cwd: project, env, stdio: ["ignore", "ignore", "inherit"] });
  const cli = join(project, "node_modules", ".bin", "tributary");
  if (!existsSync(cli)) throw new Error(`the installed project has no ${cli}`);
  return cli;
}

interface Relay {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
}

/** Starts `tributary relay` and resolves when it says it is active on the slot. */
async function startRelay(relay: Relay, url: string): Promise<ChildProcess> {
  const child = spawn(relay.command, [...relay.args, "relay", "--slot", SLOT], {
    cwd: relay.cwd,
    env: { ...userEnvironment(), DATABASE_URL: url },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${relay.name} relay not active within ${RELAY_START_MS / 1000} s:\n${log}`)), RELAY_START_MS);
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      log += chunk;
      if (log.includes(`active on slot '${SLOT}'`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${relay.name} relay exited ${code} before it was active:\n${log}`));
    });
  });
  return child;
}

async function stopRelay(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) throw new Error(`the relay exited ${child.exitCode} during the measurement`);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

const loadBefore = loadAverage();
const temp = mkdtempSync(join(tmpdir(), "tributary-installed-bench-"));
const installedCli = installFromTarballs(temp);
const relays: Relay[] = [
  { name: "installed", command: installedCli, args: [], cwd: join(temp, "project") },
  { name: "clone", command: process.execPath, args: [join(repositoryRoot, "apps", "cli", "bin", "tributary.js")], cwd: repositoryRoot },
];

progress(`starting ${flags.server} (load average ${loadBefore})`);
const cluster = await startBenchServer(flags.server, flags.settings);
const sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
let exitCode = 0;
try {
  const serverLine = await describeServer(sql);
  await migrate(sql, { slotName: SLOT, decoder: flags.decoder });
  await createStream(sql, STREAM, BENCH_PARTITIONS);
  const results = new Map<string, LagResult[]>(relays.map((r) => [r.name, []]));
  const rows: string[][] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const order = round % 2 === 1 ? relays : [...relays].reverse();
    for (const relay of order) {
      progress(`round ${round}: ${relay.name} relay, ${options.rate} events/s for ${options.seconds} s (load average ${loadAverage()})`);
      const child = await startRelay(relay, cluster.url);
      try {
        const lag = await measureLag({ url: cluster.url, stream: STREAM, rate: options.rate, seconds: options.seconds, warmupSeconds: 1, producerConnections: 4, eventsPerTransaction: 1 });
        results.get(relay.name)!.push(lag);
        rows.push([String(round), relay.name, `${lag.samples}`, lag.p50Ms.toFixed(1), lag.p99Ms.toFixed(1), lag.maxMs.toFixed(1), loadAverage()]);
      } finally {
        await stopRelay(child);
      }
    }
  }
  for (const relay of relays) {
    const r = results.get(relay.name)!;
    rows.push(["median", relay.name, "", median(r.map((x) => x.p50Ms)).toFixed(1), median(r.map((x) => x.p99Ms)).toFixed(1), median(r.map((x) => x.maxMs)).toFixed(1), ""]);
  }
  const ratio = (pick: (x: LagResult) => number) => {
    const [installed, clone] = relays.map((relay) => median(results.get(relay.name)!.map(pick)));
    return (installed! / clone!).toFixed(2);
  };
  process.stdout.write(
    `\nInstalled relay against the clone's (${new Date().toISOString()})\n` +
      `${serverLine} / ${flags.decoder}; ${options.rate} single-event tx/s for ${options.seconds} s per measurement, 1 s warm-up dropped\n` +
      `${cpus().length} cores; load average before ${loadBefore}, after ${loadAverage()}\n` +
      formatTable(["round", "relay", "samples", "p50 ms", "p99 ms", "max ms", "load after"], rows, [1]) +
      `\nratio installed / clone of the median p50 ${ratio((x) => x.p50Ms)}, of the median p99 ${ratio((x) => x.p99Ms)}\n`,
  );
} catch (error) {
  exitCode = 1;
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
} finally {
  await sql.end({ timeout: 5 });
  await cluster.destroy();
  if (options.keep) progress(`installed project kept in ${temp}`);
  else rmSync(temp, { recursive: true, force: true });
}
process.exit(exitCode);
