/**
 * Vitest's global setup: the gates that judge a whole run rather than one test.
 *
 * - Contract coverage: every worker records the (operation, status) pairs its responses had
 *   (test/support/observations.ts); when the whole suite ran (`npm test`, CI), or the whole
 *   contract suite through Prism (`npm run test:prism`), a documented pair never observed, or an
 *   observed pair the spec does not document, fails the run. Running some files or tests by hand
 *   only reports, since most pairs are then legitimately unobserved.
 * - Prism (CONTRACT_PROXY=prism, `npm run test:prism`): the contract suite runs through Prism's
 *   validating proxy (test/support/prism.ts); any violation Prism reports fails the run.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { compareCoverage, coverageFails, documentedPairs, formatCoverage, OBSERVED_REPORT } from '../../scripts/contract-coverage.js';
import { OBSERVATIONS_DIR_VARIABLE, readObservations } from './observations.js';
import { PRISM_URL_VARIABLE, startPrismJudge } from './prism.js';

/** The contract suite: what `npm run test:prism` runs through Prism. */
const CONTRACT_SUITE = resolve(import.meta.dirname, '../contract');

/** Whether every test of the suite ran: all files (or, through Prism, all contract files), no name filter. */
async function ranWholeSuite(project: TestProject, throughPrism: boolean): Promise<boolean> {
  if (project.vitest.config.testNamePattern) return false;
  const ran = new Set(project.vitest.state.getFiles().map((file) => resolve(file.filepath)));
  const { testFiles } = await project.globTestFiles();
  const suite = throughPrism ? testFiles.filter((file) => resolve(file).startsWith(`${CONTRACT_SUITE}/`)) : testFiles;
  return suite.every((file) => ran.has(resolve(file)));
}

export default async function setup(project: TestProject) {
  const observationsDir = mkdtempSync(resolve(tmpdir(), 'clients-api-observed-'));
  process.env[OBSERVATIONS_DIR_VARIABLE] = observationsDir;
  const prism = process.env.CONTRACT_PROXY === 'prism' ? await startPrismJudge() : undefined;
  if (prism) process.env[PRISM_URL_VARIABLE] = prism.url;

  return async () => {
    const failures: string[] = [];
    try {
      const observed = readObservations(observationsDir);
      const coverage = compareCoverage(documentedPairs(), observed);
      if (await ranWholeSuite(project, Boolean(prism))) {
        // The report keeps the whole suite's observations, not the contract suite's through Prism.
        if (!prism) {
          mkdirSync(dirname(OBSERVED_REPORT), { recursive: true });
          writeFileSync(OBSERVED_REPORT, `${JSON.stringify(observed, null, 2)}\n`);
        }
        console.log(`\n${prism ? 'Through Prism: ' : ''}${formatCoverage(coverage, observed)}`);
        if (coverageFails(coverage)) failures.push('Contract coverage: the spec and the observed responses differ (see above).');
      } else if (!prism) {
        console.log(`\nContract coverage not enforced (only part of the suite ran): ${coverage.percent.toFixed(1)}% of pairs observed.`);
      }
      if (prism) failures.push(...(await prism.stop()).violations);
    } catch (error) {
      failures.push(`A run-wide gate could not finish: ${String(error)}`);
    } finally {
      rmSync(observationsDir, { recursive: true, force: true });
    }
    if (failures.length > 0) {
      console.error(`\n${failures.join('\n')}`);
      // A thrown error here is only logged by vitest; the exit code is what fails CI.
      process.exitCode = 1;
    }
  };
}
