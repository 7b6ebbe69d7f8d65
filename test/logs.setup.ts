import { afterAll } from 'vitest';
import { checkLogsForSecrets } from './helpers/logs.js';

// ATTACKS.md F3, over the whole suite: after each test file (its services closed), no line that any
// of its Tessera services or processes logged may hold a password, token, client secret,
// Authorization value or private key that the file used (test/helpers/logs.ts, test/helpers/secrets.ts).
afterAll(checkLogsForSecrets);
