/**
 * Whether the standard OpenTelemetry variables ask for traces: any `OTEL_*` variable set, unless
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` (the SDK's own meaning of those two).
 * With none set, tracing is off and the SDK is never loaded (src/telemetry/start.ts).
 */
export function tracingRequested(env: Readonly<Record<string, string | undefined>>): boolean {
  const set = Object.keys(env).filter((name) => name.startsWith('OTEL_') && (env[name] ?? '').trim() !== '');
  if (set.length === 0) return false;
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return false;
  const exporters = (env['OTEL_TRACES_EXPORTER'] ?? '').split(',').map((name) => name.trim().toLowerCase());
  return !(exporters.length === 1 && exporters[0] === 'none');
}
