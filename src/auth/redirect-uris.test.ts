import { describe, expect, it } from 'vitest';
import { checkRedirectUri } from './redirect-uris.js';

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
