/**
 * Reading a /metrics endpoint the way Prometheus does: scrape it, look up a
 * sample by name and labels, and lint it with Prometheus' own `promtool
 * check metrics` (Debian package `prometheus`; .ci/run installs it). A
 * machine without promtool fails these tests: it is a required component.
 */
import { spawn } from "node:child_process";

export async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url} answered ${response.status}: ${await response.text()}`);
  const type = response.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain; version=0.0.4")) throw new Error(`GET ${url}: content-type '${type}' is not Prometheus' text format`);
  return response.text();
}

/** The value of the sample `name{labels}` (labels matched exactly, in any order), or undefined. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",");
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? "").split(/,(?=[a-zA-Z_]+=")/).filter(Boolean).sort().join(",");
    if (have === wanted) return Number(match[3]);
  }
  return undefined;
}

/** `promtool check metrics` on `text`: exit code and what it printed (empty when the text is clean). */
export async function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("promtool", ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.on("error", (error: NodeJS.ErrnoException) => {
      reject(error.code === "ENOENT"
        ? new Error("promtool is not installed: these tests lint metrics with Prometheus' own promtool. Install it (Debian: apt-get install prometheus) and run them again.")
        : error);
    });
    child.on("close", (code) => resolve({ code, output: output.trim() }));
    child.stdin.end(text);
  });
}
