/**
 * SIGTERM/SIGINT: run the stop action once, exit 0 when it finishes, and exit
 * anyway after 4.5 s so a stuck connection never blocks a deploy.
 */
export function onShutdown(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.error(`[tributary] ${signal}: stopping`);
    const force = setTimeout(() => process.exit(0), 4500);
    force.unref();
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`[tributary] error while stopping: ${(error as Error)?.message ?? error}`);
        process.exit(0);
      },
    );
  };
  process.once("SIGTERM", handler);
  process.once("SIGINT", handler);
}
