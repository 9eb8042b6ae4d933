// The migrations ship inside this package: copy the repository's migrations/
// (the single source of the schema) into ./migrations, which `files` publishes
// and readMigrations() reads when it runs from dist/.
import { cpSync, rmSync } from "node:fs";

const target = new URL("./migrations/", import.meta.url);
rmSync(target, { recursive: true, force: true });
cpSync(new URL("../../migrations/", import.meta.url), target, { recursive: true, filter: (path) => !path.endsWith("~") });
