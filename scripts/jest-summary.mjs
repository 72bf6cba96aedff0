#!/usr/bin/env node
// @ts-check
/**
 * `.ci/run`'s reader of one jest run: `node scripts/jest-summary.mjs <results.json> <log> <all test files>`.
 * Prints one line `counts <passed> <failed>`, then one line per failing test, per suite that failed to run, and
 * per suite that never finished (the run was killed by its time limit: no JSON, or files missing from it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

const [resultsFile, logFile, listFile] = process.argv.slice(2);
const rel = (file) => relative(process.cwd(), file);
const lines = [];
let passed = 0;
let failed = 0;

/** @type {{ testResults: Array<{ name: string, status: string, message: string, assertionResults: Array<{ status: string, fullName: string, failureMessages: string[] }> }> } | undefined} */
const results = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : undefined;
const finished = new Set();
if (results) {
  for (const suite of results.testResults) {
    finished.add(rel(suite.name));
    for (const test of suite.assertionResults) {
      if (test.status === 'passed') passed++;
      if (test.status !== 'failed') continue;
      failed++;
      const timedOut = test.failureMessages.some((m) => m.includes('Exceeded timeout'));
      lines.push(`FAILED  ${rel(suite.name)} › ${test.fullName}${timedOut ? ' (timed out)' : ''}`);
    }
    // A suite that failed outside any test (a hook, an import, open handles reported as failure).
    if (suite.status === 'failed' && !suite.assertionResults.some((t) => t.status === 'failed')) {
      failed++;
      lines.push(
        `FAILED  ${rel(suite.name)} (suite: ${
          suite.message
            .split('\n')
            .find((l) => l.trim())
            ?.trim() ?? 'failed'
        })`,
      );
    }
  }
} else if (existsSync(logFile)) {
  // No JSON: the run was killed. Count what the log says finished.
  for (const match of readFileSync(logFile, 'utf8').matchAll(/^(PASS|FAIL) +(\S+)/gm)) finished.add(match[2]);
}
const all = existsSync(listFile) ? readFileSync(listFile, 'utf8').split('\n').filter(Boolean).map(rel) : [];
for (const file of all) {
  if (finished.has(file)) continue;
  failed++;
  lines.push(`TIMED OUT  ${file} (never finished: the run was stopped)`);
}
console.log(`counts ${passed} ${failed}`);
for (const line of lines) console.log(line);
