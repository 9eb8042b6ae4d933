/**
 * A Prometheus stand-in for the "metrics on" runs of bench:relay and
 * bench:consumer: GETs a child's /metrics over HTTP about once a second, so
 * what those runs cost includes collecting and serving the registry (the
 * slot or partition reads its gauges make per scrape), not only counting.
 * One scrape at a time: a slow one delays the next rather than piling up.
 */

export interface ScrapeSummary {
  readonly scrapes: number;
  readonly failures: number;
  /** Size of the last scrape's body. */
  readonly lastBytes: number;
  /** Slowest scrape, from the request to the whole body. */
  readonly maxMs: number;
}

export interface Scraper {
  stop(): Promise<ScrapeSummary>;
}

/** Scrapes `url` now and then every `intervalMs` until stopped. */
export function scrapeEvery(url: string, intervalMs = 1000): Scraper {
  let scrapes = 0;
  let failures = 0;
  let lastBytes = 0;
  let maxMs = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  const scrape = async () => {
    const started = performance.now();
    try {
      const response = await fetch(url);
      const body = await response.text();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      scrapes++;
      lastBytes = body.length;
    } catch {
      failures++;
    }
    maxMs = Math.max(maxMs, performance.now() - started);
  };
  const tick = () => {
    const started = performance.now();
    inFlight = scrape().finally(() => {
      if (!stopped) timer = setTimeout(tick, Math.max(0, intervalMs - (performance.now() - started)));
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
      return { scrapes, failures, lastBytes, maxMs };
    },
  };
}
