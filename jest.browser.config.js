import base from './jest.config.js';

/** `npm run test:browser`: the dashboard in a real Chromium (scripts/ensure-etcd.mjs --chromium provides it). */
export default {
  ...base,
  roots: ['<rootDir>/test'],
  testMatch: ['**/test/browser/**/*.spec.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 60000,
};
