import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";
import LongestFirst from "./support/sequencer.ts";

// Tests import the workspace packages' TypeScript sources (the "@tributary/source"
// condition of their package.json exports); the CLI they spawn runs its build.
// Without Vite's "module" condition, which Node does not know: dependencies
// resolve as they do for users (@opentelemetry/api's "module" build imports
// files without extensions, which only a bundler resolves).
const conditions = ["@tributary/source", ...defaultServerConditions.filter((c) => c !== "module")];

export default defineConfig({
  ssr: { resolve: { conditions } },
  test: {
    root: new URL("..", import.meta.url).pathname,
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
