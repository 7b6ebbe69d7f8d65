import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['10s', 10],
    ['15m', 900],
    ['2h', 7_200],
    ['14d', 1_209_600],
    ['90d', 7_776_000],
    ['45', 45],
    ['0', 0],
    ['0s', 0],
    [' 15m ', 900],
    ['999999999s', 999_999_999],
  ])('reads %j as %i seconds', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each([
    '',
    ' ',
    'soon',
    's',
    'm15',
    '-1s',
    '+1s',
    '1.5h',
    '1,5h',
    '1e3',
    '0x10',
    '15ms',
    '15M',
    '1w',
    '1y',
    '15m30s',
    '1234567890s', // ten digits: more than any sane lifetime, and refused rather than rounded
    '١٥m', // Arabic-Indic digits are not ASCII digits
    '１５m', // nor are full-width ones
    'Infinity',
    'NaN',
  ])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
