/**
 * The environment of a user's shell, for commands that must run as a user
 * runs them (npm pack and npm install of the published packages, npx
 * tributary): none of the npm_* variables an npm script (`npm test`, `npm
 * run bench:…`) passes down (they name this repository as npm's prefix), no
 * NODE_PATH or NODE_OPTIONS that could resolve modules elsewhere, no
 * DATABASE_URL unless given. npm's own configuration (cache, registry,
 * certificates, proxies) is kept.
 */
const keptNpmSettings = new Set([
  "npm_config_cache",
  "npm_config_userconfig",
  "npm_config_globalconfig",
  "npm_config_registry",
  "npm_config_cafile",
  "npm_config_proxy",
  "npm_config_https_proxy",
  "npm_config_noproxy",
  "npm_config_strict_ssl",
]);

export function userEnvironment(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(name) && !keptNpmSettings.has(name.toLowerCase())) continue;
    if (["NODE_PATH", "NODE_OPTIONS", "INIT_CWD", "DATABASE_URL"].includes(name)) continue;
    env[name] = value;
  }
  return { ...env, npm_config_update_notifier: "false", ...extra };
}
