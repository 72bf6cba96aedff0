import base from './jest.config.js';

/** `npm run test:faults`: the fault-injection scenarios (slow: they wait out TTLs and restart etcd). */
export default {
  ...base,
  testMatch: ['**/test/faults/**/*.spec.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 60000,
};
