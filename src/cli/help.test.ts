import { describe, expect, it } from 'vitest';
import { COMMANDS } from './commands.js';
import { formatUsage } from './help.js';

describe('the top-level usage', () => {
  it('keeps every command, and the blank lines between groups, when a summary wraps', () => {
    const long = 'a summary long enough to wrap onto a second line of the usage table, as a new command might have';
    const commands = new Map([...COMMANDS].map(([name, entry]) => [name, { summary: name === 'users create' ? long : entry.summary }]));
    const usage = formatUsage(commands);
    for (const name of COMMANDS.keys()) expect(usage).toContain(`  ${name} `);
    expect(usage.replace(/\s+/g, ' ')).toContain(long);
    for (const line of usage.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    // The same groups, separated the same way, as with the real summaries.
    const blankLines = (text: string) => text.split('\n').filter((line) => line === '').length;
    expect(blankLines(usage)).toBe(blankLines(formatUsage()));
  });
});
