import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { repositoryRoot } from "./child-process.ts";

export interface Workspace {
  readonly dir: string;
  readonly manifest: {
    name: string;
    version: string;
    private?: boolean;
    exports?: Record<string, Record<string, string>>;
    bin?: Record<string, string>;
  };
}

/** The root package.json's workspaces that are not private: what `npm publish -ws` would publish. */
export function publishableWorkspaces(): Workspace[] {
  const root = JSON.parse(readFileSync(join(repositoryRoot, "package.json"), "utf8")) as { workspaces: string[] };
  const found: Workspace[] = [];
  for (const pattern of root.workspaces) {
    if (!pattern.endsWith("/*")) throw new Error(`workspace pattern '${pattern}': only 'dir/*' patterns are read here`);
    const parent = join(repositoryRoot, pattern.slice(0, -2));
    for (const entry of readdirSync(parent).sort()) {
      const file = join(parent, entry, "package.json");
      if (!existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, "utf8")) as Workspace["manifest"];
      if (!manifest.private) found.push({ dir: join(parent, entry), manifest });
    }
  }
  return found;
}
