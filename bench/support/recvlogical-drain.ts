/**
 * The decode limit of a server: pg_recvlogical reading a slot to a given LSN
 * and throwing the output away. It asks for exactly what the relay asks for
 * (the same plugin options as packages/wal), so the walsender does the same
 * decoding work for both; only the consumer differs.
 */
import { spawn } from "node:child_process";
import { PUBLICATION, type Decoder } from "@tributary/core";
import { PG_RECVLOGICAL } from "./bench-server.ts";

/** The relay's START_REPLICATION options (packages/wal pgoutput.ts / wal2json.ts), as pg_recvlogical -o flags. */
export function pluginOptions(decoder: Decoder): string[] {
  const options =
    decoder === "pgoutput"
      ? ["proto_version=1", `publication_names=${PUBLICATION}`, "messages=true"]
      : ["format-version=2", "include-lsn=on", "include-timestamp=on", "include-transaction=on", "filter-tables=*.*"];
  return options.flatMap((o) => ["-o", o]);
}

export interface DrainResult {
  readonly seconds: number;
  readonly pid: number;
}

/**
 * Streams `slot` from its confirmed position to `endLsn` into `outputFile`
 * (default /dev/null); resolves when pg_recvlogical exits. pg_recvlogical
 * writes each message's bytes followed by a newline.
 */
export function drainSlot(url: string, slot: string, decoder: Decoder, endLsn: string, outputFile = "/dev/null"): Promise<DrainResult> {
  const args = ["-d", url, "--slot", slot, "--start", "--endpos", endLsn, "--no-loop", "-f", outputFile, ...pluginOptions(decoder)];
  const started = performance.now();
  const child = spawn(PG_RECVLOGICAL, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      if (code === 0) resolve({ seconds, pid: child.pid! });
      else reject(new Error(`pg_recvlogical exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}
