/**
 * The order test files start in: the longest first, so that the two workers
 * (vitest.config.ts maxWorkers) finish together instead of one running the
 * memory test alone at the end. Vitest's own sequencer orders by the
 * durations it cached on this machine, and by file size on a fresh clone (CI
 * has no cache); file size says little here. The table holds the files that
 * take the longest, in seconds of one `npm test` on the 2-core development
 * machine (2026-12-02); the others keep vitest's order after them. The
 * figures only order the files: nothing waits on them.
 */
import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

const SECONDS: Readonly<Record<string, number>> = {
  "test/faults.test.ts": 143,
  "test/memory.test.ts": 135,
  "test/capture-faults.test.ts": 110,
  "test/kafka-bridge.test.ts": 101,
  "test/cli-queues.test.ts": 75,
  "test/consumer-groups.test.ts": 59,
  "test/trust.test.ts": 48,
  "test/tls.test.ts": 41,
  "test/cli-groups.test.ts": 37,
  "test/standby.test.ts": 36,
  "test/queues.test.ts": 35,
  "test/secrets.test.ts": 27,
  "test/queue-workers.test.ts": 25,
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const ordered = await super.sort(files);
    const seconds = (file: TestSpecification) => SECONDS[relative(file.project.config.root, file.moduleId)] ?? 0;
    // Array.prototype.sort is stable: files outside the table keep vitest's order.
    return [...ordered].sort((a, b) => seconds(b) - seconds(a));
  }
}
