/** Real etcd in every test: one etcd per test file, so files stay independent. */
export default {
  testEnvironment: 'node',
  // sample-app/test: the sample app's own unit tests, run on the built package as an app would use it.
  roots: ['<rootDir>/test', '<rootDir>/sample-app/test'],
  testMatch: ['**/*.spec.ts'],
  // The fault scenarios and the browser tests run on their own: `npm run test:faults`, `npm run test:browser`.
  testPathIgnorePatterns: ['/node_modules/', '/test/faults/', '/test/browser/', '/test/scale/'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: {
          target: 'es2022',
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true },
        },
        module: { type: 'es6' },
      },
    ],
  },
  testTimeout: 30000,
  detectOpenHandles: false,
};
