import type { DestinationStream } from 'pino';

/** Collects every JSON log line, so tests can assert audit events and that nothing secret was logged. */
export interface CapturedLogs extends DestinationStream {
  readonly lines: string[];
  /** Parsed entries, optionally only those with this `event`. */
  entries(event?: string): Record<string, unknown>[];
}

export function captureLogs(): CapturedLogs {
  const lines: string[] = [];
  return {
    lines,
    write(chunk: string) {
      lines.push(...chunk.split('\n').filter((line) => line !== ''));
    },
    entries(event?: string) {
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      return event === undefined ? parsed : parsed.filter((entry) => entry['event'] === event);
    },
  };
}
