import { describe, expect, it } from 'vitest';
import { checkRedirectUri, matchesRedirectUri } from './redirect-uris.js';

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
  ])('refuses %s', (uri, message) => {
    expect(checkRedirectUri(uri)).toContain(message);
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
  ])('%s refuses %s', (registered, given) => {
    expect(matchesRedirectUri(registered, given)).toBe(false);
  });
});
