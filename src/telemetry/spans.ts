import { type Span, SpanStatusCode, trace } from '@opentelemetry/api';

// Only the standard API: what it answers while no SDK is registered (tracing off) is a no-op that
// allocates nothing, so the code below costs a function call per use when tracing is off.
const tracer = trace.getTracer('tessera');

/**
 * A child span of the active one, or undefined when there is no recording span to hang it under:
 * tracing off, a request not sampled, or work outside a request (start-up, background jobs). The
 * caller ends it.
 */
export function startChildSpan(name: string): Span | undefined {
  const parent = trace.getActiveSpan();
  if (parent === undefined || !parent.isRecording()) return undefined;
  return tracer.startSpan(name);
}

/**
 * `work(a, b)` inside a child span named `name`, the active span while it runs, so the queries and
 * Redis commands it makes hang under it. (Two arguments rather than a closure: nothing is allocated
 * when there is no span.) An error marks the span failed with its code only: error messages are
 * never recorded, as they may quote input.
 */
export function inChildSpan<A, B, T>(name: string, work: (a: A, b: B) => Promise<T>, a: A, b: B): Promise<T> {
  const parent = trace.getActiveSpan();
  if (parent === undefined || !parent.isRecording()) return work(a, b);
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return await work(a, b);
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorCode(error) });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** An OAuth error code, a SQLSTATE, or the error's class name: never its message. */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[A-Za-z0-9_]{1,40}$/.test(code)) return code;
  return error instanceof Error ? error.name : 'error';
}

/** The ids pino adds to each line written inside a span (src/logger.ts, only with tracing on). */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
