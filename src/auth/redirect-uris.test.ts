import { describe, expect, it } from 'vitest';
import { checkRedirectUri, checkRedirectUris, matchesRedirectUri } from './redirect-uris.js';

describe('checkRedirectUri', () => {
  it.each([
    'https://app.example.com/callback',
    'https://app.example.com:8443/cb?tenant=a',
    'http://127.0.0.1:53127/callback',
    'http://[::1]:8080/cb',
    'http://localhost/cb',
    'com.example.app:/oauth2redirect',
  ])('accepts %s', (uri) => {
    expect(checkRedirectUri(uri)).toBeUndefined();
  });

  it.each([
    ['http://app.example.com/cb', 'an http redirect URI must be on a loopback host'],
    ['http://127.0.0.2.example.com/cb', 'an http redirect URI must be on a loopback host'],
    ['https://app.example.com/cb#x', 'a redirect URI has no fragment'],
    ['https://app.example.com/cb#', 'a redirect URI has no fragment'],
    ['/callback', 'a redirect URI is an absolute URI'],
    ['https://user:pw@app.example.com/cb', 'a redirect URI has no user information'],
    ['javascript:alert(1)', 'a redirect URI is https, http on a loopback host'],
    ['data:text/html,x', 'a redirect URI is https, http on a loopback host'],
    ['myapp:/cb', 'a redirect URI is https, http on a loopback host'],
    ['https://app.example.com/c b', 'a redirect URI is printable ASCII'],
    ['', 'a redirect URI has 1 to 255 characters'],
    [`https://app.example.com/${'a'.repeat(232)}`, 'a redirect URI has 1 to 255 characters'],
    ['https://user@app.example.com/cb', 'a redirect URI has no user information'],
    ['https://:pw@app.example.com/cb', 'a redirect URI has no user information'],
    // The scheme's every label, first to last, must have a character: not only some run of them.
    ['com..example.app:/cb', 'a redirect URI is https, http on a loopback host'],
    ['com.example.:/cb', 'a redirect URI is https, http on a loopback host'],
  ])('refuses %s', (uri, message) => {
    expect(checkRedirectUri(uri)).toContain(message);
  });

  it('takes 255 characters, not 256', () => {
    const uri = `https://app.example.com/${'a'.repeat(231)}`;
    expect(uri).toHaveLength(255);
    expect(checkRedirectUri(uri)).toBeUndefined();
  });

  it('shows a refused URI whole up to 100 characters, and its first 100 then ... beyond', () => {
    const hundred = `http://app.example.com/${'a'.repeat(77)}`;
    expect(hundred).toHaveLength(100);
    const base = 'an http redirect URI must be on a loopback host (127.0.0.1, [::1], localhost); use https: ';
    expect(checkRedirectUri(hundred)).toBe(`${base}${hundred}`);
    expect(checkRedirectUri(`${hundred}b`)).toBe(`${base}${hundred}...`);
  });
});

describe('checkRedirectUris', () => {
  const uri = (i: number) => `https://app.example.com/cb${i}`;

  it('takes up to 20 good URIs, or none', () => {
    expect(checkRedirectUris(Array.from({ length: 20 }, (_, i) => uri(i)))).toBeUndefined();
    expect(checkRedirectUris([])).toBeUndefined();
  });

  it('refuses a 21st URI', () => {
    expect(checkRedirectUris(Array.from({ length: 21 }, (_, i) => uri(i)))).toBe('a client has at most 20 redirect URIs of each kind');
  });

  it('names the first bad URI of the list', () => {
    expect(checkRedirectUris([uri(1), 'http://app.example.com/cb', 'myapp:/cb'])).toBe(
      'an http redirect URI must be on a loopback host (127.0.0.1, [::1], localhost); use https: http://app.example.com/cb',
    );
  });
});

describe('matchesRedirectUri', () => {
  it.each([
    ['http://127.0.0.1/callback', 'http://127.0.0.1/callback'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:54321/callback'],
    ['http://127.0.0.1:8080/callback', 'http://127.0.0.1:54321/callback'],
    ['http://127.0.0.1:8080/callback', 'http://127.0.0.1/callback'],
    ['http://127.0.0.1', 'http://127.0.0.1:65535'],
    ['http://[::1]/cb?app=1', 'http://[::1]:1/cb?app=1'],
    ['https://app.example.com/cb', 'https://app.example.com/cb'],
  ])('%s takes %s', (registered, given) => {
    expect(matchesRedirectUri(registered, given)).toBe(true);
  });

  it.each([
    ['http://127.0.0.1/callback', 'http://127.0.0.1:54321/other'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:54321/callback?x=1'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:54321/callback#x'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:65536/callback'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:0/callback'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:/callback'],
    ['http://127.0.0.1/callback', 'http://[::1]:54321/callback'],
    ['http://127.0.0.1/callback', 'https://127.0.0.1:54321/callback'],
    ['http://127.0.0.1/callback', 'http://127.0.0.1:54321@evil.example/callback'],
    ['http://localhost/callback', 'http://localhost:54321/callback'],
    ['https://app.example.com/cb', 'https://app.example.com:8443/cb'],
    ['https://app.example.com/callback', 'http://127.0.0.1:54321/callback'],
    ['http://127.0.0.1/callback', 'evil:http://127.0.0.1:54321/callback'],
  ])('%s refuses %s', (registered, given) => {
    expect(matchesRedirectUri(registered, given)).toBe(false);
  });
});
