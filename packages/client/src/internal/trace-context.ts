/**
 * Trace context from append to handler (docs/ARCHITECTURE.md "Traces"),
 * through @opentelemetry/api only: with no OpenTelemetry SDK registered by
 * the application, every call here is the API's no-op and nothing is added.
 *
 * - An append made inside an active span carries its W3C trace context in
 *   the event's headers (`traceparent`, `tracestate`), unless the caller set
 *   them itself; SQL callers pass them in `headers` as any header.
 * - Whoever handles events (a group member, a reader's handler, a queue
 *   worker, the Kafka bridge) runs the handler in a CONSUMER span linked to
 *   the producer's context, with messaging semantic-convention attributes:
 *   a link rather than a parent, as OpenTelemetry's messaging conventions
 *   advise when one span handles what many producers sent.
 * - A reader yields events to a `for await` loop, whose body no library can
 *   run inside a context: each yielded event's span starts at the yield and
 *   ends when the loop asks for the next event (or leaves), so it lasts as
 *   long as the loop body's work on the event, and `eventTraceContext(event)`
 *   gives the body that span's context for spans of its own.
 */
import { context, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from "@opentelemetry/api";

const TRACER = "@tributary/client";
const tracer = () => trace.getTracer(TRACER);

/**
 * Whether an SDK is registered: the API's global provider is a proxy with no
 * delegate until one is. Without one, a no-op span per event still cost the
 * member about 0.55 µs (of ~6.5 µs per event in bench:consumer), so handlers
 * then run without building one.
 */
function tracing(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer(TRACER) !== undefined;
}

/** The W3C headers a propagator injects for the active context; empty when there is none (or no SDK). */
export function activeTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const out: Record<string, string> = {};
  if (carrier.traceparent) out.traceparent = carrier.traceparent;
  if (carrier.tracestate) out.tracestate = carrier.tracestate;
  return out;
}

/** `headers` with the active trace context added, the caller's own values first. */
export function withTraceHeaders<V>(headers: Record<string, V> | undefined): Record<string, V | string> | undefined {
  const active = activeTraceHeaders();
  if (active.traceparent === undefined) return headers;
  return { ...active, ...headers };
}

/** The link to the context an event's headers carry, if any. */
export function producerLink(headers: unknown): Link | null {
  if (headers === null || typeof headers !== "object") return null;
  const carrier = headers as Record<string, unknown>;
  if (typeof carrier.traceparent !== "string") return null;
  const producer = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, carrier, {
    get: (c, key) => (typeof c[key] === "string" ? (c[key] as string) : undefined),
    keys: (c) => Object.keys(c),
  }));
  return producer ? { context: producer } : null;
}

/** Links per span at most: OpenTelemetry's default span limit. */
const MAX_LINKS = 128;

type SpanDescription = () => { attributes: Attributes; links: readonly (Link | null)[] };

/**
 * A CONSUMER span named `process <destination>`, linked to `links` (the
 * first 128), with `attributes` (both from `describe`, called only when an
 * SDK is registered); undefined when none is. The caller ends it.
 */
export function startConsumerSpan(destination: string, describe: SpanDescription): Span | undefined {
  if (!tracing()) return undefined;
  const { attributes, links } = describe();
  return tracer().startSpan(`process ${destination}`, {
    kind: SpanKind.CONSUMER,
    attributes: { "messaging.operation.type": "process", "messaging.operation.name": "process", "messaging.destination.name": destination, ...attributes },
    links: links.filter((l): l is Link => l !== null).slice(0, MAX_LINKS),
  });
}

/** Runs `work` in startConsumerSpan's span; the span records a thrown error and ends when `work` settles. */
export async function inConsumerSpan<T>(destination: string, describe: SpanDescription, work: () => Promise<T>): Promise<T> {
  const span = startConsumerSpan(destination, describe);
  if (span === undefined) return work();
  try {
    return await context.with(trace.setSpan(context.active(), span), work);
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** The span of each event a reader has yielded and the loop has not yet passed. */
const yieldedSpans = new WeakMap<object, Span>();

/** Ties `span` to `event` until `end` is called (by the reader, when the loop asks for the next event). */
export function holdEventSpan(event: object, span: Span): () => void {
  yieldedSpans.set(event, span);
  return () => {
    yieldedSpans.delete(event);
    span.end();
  };
}

/**
 * The trace context to handle `event` in: a reader's span for the event
 * while the loop body runs, else the active context (a group member's or a
 * queue worker's handler already runs inside its span).
 */
export function eventTraceContext(event: object): Context {
  const span = yieldedSpans.get(event);
  return span === undefined ? context.active() : trace.setSpan(context.active(), span);
}
