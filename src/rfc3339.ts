const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** An RFC 3339 date-time (`2026-12-06T10:00:00Z`, with an offset or fractions), or undefined. */
export function parseRfc3339(text: string): Date | undefined {
  if (!RFC3339.test(text)) return undefined;
  const time = new Date(text);
  return Number.isNaN(time.getTime()) ? undefined : time;
}

/** A filter's time, `name=text`: undefined when not given; otherwise an RFC 3339 time, or `fail` with the message every list gives. */
export function readRfc3339Filter(name: string, text: string | undefined, fail: (message: string) => Error): Date | undefined {
  if (text === undefined) return undefined;
  const time = parseRfc3339(text);
  if (time === undefined) throw fail(`${name} must be an RFC 3339 time such as 2026-12-06T10:00:00Z`);
  return time;
}
