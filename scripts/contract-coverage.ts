/**
 * Coverage of the contract: every (operation, documented status) pair of the spec, and which of
 * them the contract tests observed.
 *
 *   npm run coverage:contract           lists every pair; with the last full test run's observations
 *                                       (reports/contract-observed.json) marks each and exits 1 on a gap
 *
 * The same comparison runs at the end of every full `npm test` (test/support/global-setup.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { operationList } from '../generated/operations.js';

export interface Pair {
  operationId: string;
  status: number;
}

export interface Coverage {
  documented: Pair[];
  missing: Pair[];
  /** Observed, but the spec does not document this status for this operation. */
  undocumented: Pair[];
  percent: number;
}

export const OBSERVED_REPORT = resolve(import.meta.dirname, '../reports/contract-observed.json');

const key = (p: Pair) => `${p.operationId} ${p.status}`;
const describe = (p: Pair) => {
  const op = operationList.find((o) => o.operationId === p.operationId);
  return `${p.operationId.padEnd(24)} ${(op ? `${op.method.toUpperCase()} ${op.path}` : '(not in the spec)').padEnd(36)} ${p.status}`;
};

export function documentedPairs(): Pair[] {
  return operationList.flatMap((op) => op.statuses.map((status) => ({ operationId: op.operationId, status })));
}

export function compareCoverage(documented: Pair[], observed: Pair[]): Coverage {
  const seen = new Set(observed.map(key));
  const known = new Set(documented.map(key));
  const missing = documented.filter((p) => !seen.has(key(p)));
  const undocumented = observed.filter((p) => !known.has(key(p)));
  const percent = documented.length === 0 ? 100 : (100 * (documented.length - missing.length)) / documented.length;
  return { documented, missing, undocumented, percent };
}

export function formatCoverage(coverage: Coverage, observed: Pair[]): string {
  const seen = new Set(observed.map(key));
  const lines = coverage.documented.map(
    (p) => `  ${seen.has(key(p)) ? '✓' : '✗'} ${describe(p)}${seen.has(key(p)) ? '' : '  never observed'}`,
  );
  for (const p of coverage.undocumented) lines.push(`  ✗ observed, not documented: ${describe(p)}`);
  const covered = coverage.documented.length - coverage.missing.length;
  lines.push(
    `Contract coverage: ${covered}/${coverage.documented.length} documented (operation, status) pairs observed (${coverage.percent.toFixed(1)}%); ${coverage.undocumented.length} undocumented pair(s) observed.`,
  );
  return lines.join('\n');
}

export const coverageFails = (coverage: Coverage) => coverage.missing.length > 0 || coverage.undocumented.length > 0;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (!existsSync(OBSERVED_REPORT)) {
    console.log('Documented (operation, status) pairs:');
    for (const pair of documentedPairs()) console.log(`  ${describe(pair)}`);
    console.log('No observations yet: run the whole suite (npm test) to record them.');
  } else {
    const observed = JSON.parse(readFileSync(OBSERVED_REPORT, 'utf8')) as Pair[];
    const coverage = compareCoverage(documentedPairs(), observed);
    console.log(formatCoverage(coverage, observed));
    if (coverageFails(coverage)) process.exitCode = 1;
  }
}
