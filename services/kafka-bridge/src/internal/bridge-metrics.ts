/**
 * The bridge's metrics (docs/ARCHITECTURE.md "Metrics"), on a prom-client
 * registry passed as `BridgeConfig.metrics`: records Kafka acknowledged (all
 * replicas, acks -1) and failed sends, by stream and topic, and how long a
 * send took. The bridge's consumer group member reports its partitions'
 * committed offset, end and lag on the same registry (client consumer-metrics).
 */
import { Counter, Histogram, type Registry } from "prom-client";

export class BridgeMetrics {
  private readonly records: Counter<"stream" | "topic">;
  private readonly errors: Counter<"stream" | "topic">;
  private readonly seconds: Histogram<"topic">;

  constructor(registry: Registry) {
    const registers = [registry];
    const metric = <M>(name: string, make: () => M): M => (registry.getSingleMetric(name) as M | undefined) ?? make();
    this.records = metric("tributary_bridge_records_sent_total", () => new Counter({
      name: "tributary_bridge_records_sent_total", help: "Events the bridge sent to Kafka and Kafka acknowledged (acks = all).", labelNames: ["stream", "topic"], registers,
    }));
    this.errors = metric("tributary_bridge_send_errors_total", () => new Counter({
      name: "tributary_bridge_send_errors_total", help: "Sends to Kafka that failed (each retried with backoff; nothing is committed meanwhile).", labelNames: ["stream", "topic"], registers,
    }));
    this.seconds = metric("tributary_bridge_send_duration_seconds", () => new Histogram({
      name: "tributary_bridge_send_duration_seconds", help: "Time from a batch's send to Kafka's acknowledgement.", labelNames: ["topic"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    }));
  }

  routed(stream: string, topic: string): void {
    this.records.inc({ stream, topic }, 0);
    this.errors.inc({ stream, topic }, 0);
  }

  sent(stream: string, topic: string, records: number, seconds: number): void {
    this.records.inc({ stream, topic }, records);
    this.seconds.observe({ topic }, seconds);
  }

  failed(stream: string, topic: string): void {
    this.errors.inc({ stream, topic });
  }
}
