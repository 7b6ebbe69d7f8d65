import { afterAll, afterEach } from 'vitest';
import { checkRecordedResponses } from './helpers/openapi.js';

// Every response a test's Tessera sent must be one that openapi.yaml describes (test/helpers/openapi.ts).
// After each test, so that the test that produced a bad response fails; after the file, for
// responses sent in beforeAll and afterAll hooks.
afterEach(checkRecordedResponses);
afterAll(checkRecordedResponses);
