import base from './jest.config.js';

/** `npm run test:scale`: the bench's scale cases in their quick form, run once to check that they run. */
export default {
  ...base,
  roots: ['<rootDir>/test'],
  testMatch: ['**/test/scale/**/*.spec.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 240000,
};
