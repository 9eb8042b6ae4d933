/**
 * A benchmark's child process as one esbuild bundle: what bench:consumer's
 * member, bench:bridge's bridge and reader and bench:queue's workers share.
 * One ESM file for Node 20 (CommonJS dependencies' require() works inside
 * it), module markers relative to the repository root (the CPU profile
 * summaries read them), and `alias`es to other copies of a package (a
 * proposed change) resolved against the repository's node_modules.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import type { BuildOptions } from "esbuild";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export async function bundleChild(options: BuildOptions, alias: Record<string, string> = {}): Promise<void> {
  const { build } = await import("esbuild");
  await build({
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // The workspace packages' TypeScript sources, not their built dist/ (package.json exports).
    conditions: ["@tributary/source"],
    // CommonJS dependencies call require() inside the ESM bundle.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: "error",
    absWorkingDir: repoRoot,
    ...options,
    external: ["pg-native", ...(options.external ?? [])],
    ...(Object.keys(alias).length > 0 ? { alias, nodePaths: [join(repoRoot, "node_modules")] } : {}),
  });
}
