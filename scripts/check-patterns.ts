/**
 * The fourth judge of `npm run lint:spec`: every `pattern` in the bundled spec
 * (generated/openapi.json), of request bodies, parameters, headers and responses alike, must
 * match in linear time. The validator runs each pattern on whatever a caller sends, with
 * `allErrors`, so one pattern that backtracks polynomially on some input (such as
 * `^\s*(X)?\s*$` on a long run of spaces and then a character it refuses) lets one request hold
 * the whole process, the embedded database included, for as long as it likes.
 *
 * The judge is recheck (a static ReDoS analysis, automata-based where the pattern is small enough,
 * fuzzing guided by static analysis otherwise), on its pure-JavaScript backend: no native binary
 * or JVM, the same result on every machine. Its time limits are off and its random seed fixed, so
 * a verdict depends on the pattern only, never on how loaded the machine is. A pattern is refused
 * when found vulnerable (exponential or polynomial) and when the analysis cannot conclude.
 *
 * The analysis of a long pattern takes seconds, so its verdict is kept in node_modules/.cache by
 * the pattern, recheck's version and the parameters (which decide it entirely): `npm run
 * lint:spec` and the unit test that runs the same judge (test/unit/spec-patterns.test.ts) analyse
 * each pattern once per checkout, and again only when it changes.
 *
 *   npm run lint:spec:patterns            (the bundled spec)
 *   tsx scripts/check-patterns.ts <file>  (another bundled document)
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

const BUNDLED_SPEC = resolve(import.meta.dirname, '../generated/openapi.json');

/** recheck's parameters: only step limits, no clock, one seed (see above). */
const PARAMETERS = {
  randomSeed: 0,
  timeout: null,
  attackTimeout: null,
  incubationTimeout: null,
  seedingTimeout: null,
};

export interface PatternVerdict {
  pattern: string;
  /** Where the spec has it: JSON pointers. */
  where: string[];
  status: 'safe' | 'vulnerable' | 'unknown';
  /** recheck's summary: `linear`, `safe`, `2nd degree polynomial`, `exponential`… */
  complexity: string;
  /** For a vulnerable pattern, an input that shows it, as recheck writes it (`'\t'.repeat(54773) + '\x00'`). */
  attack?: string;
}

/** Every `pattern` keyword's value in `doc`, with the JSON pointers of the schemas that have it. */
export function specPatterns(doc: unknown): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const walk = (node: unknown, pointer: string) => {
    if (Array.isArray(node)) {
      for (const [i, item] of node.entries()) walk(item, `${pointer}/${i}`);
    } else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        const at = `${pointer}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
        // A schema's pattern is a string; a property named "pattern" (an object) is walked into.
        if (key === 'pattern' && typeof value === 'string') found.set(value, [...(found.get(value) ?? []), at]);
        else walk(value, at);
      }
    }
  };
  walk(doc, '#');
  return found;
}

/**
 * recheck in a worker thread: its analysis is synchronous and CPU-bound, so the patterns are
 * shared among as many threads as there are cores. Plain JavaScript evaluated by the worker, so
 * that no TypeScript loader is needed inside it (tsx, vitest).
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
process.env.RECHECK_SYNC_BACKEND = 'pure';
const { checkSync } = require(workerData.recheck);
parentPort.on('message', (pattern) => {
  let result;
  try {
    const d = checkSync(pattern, 'u', workerData.parameters);
    result = {
      status: d.status,
      complexity: d.complexity ? d.complexity.summary : 'unknown: ' + (d.error ? d.error.kind + (d.error.message ? ' ' + d.error.message : '') : ''),
      attack: d.attack ? d.attack.pattern : undefined,
    };
  } catch (error) {
    result = { status: 'unknown', complexity: 'unknown: ' + String(error && error.message) };
  }
  parentPort.postMessage(result);
});
`;

type Analysis = Omit<PatternVerdict, 'pattern' | 'where'>;

const require = createRequire(import.meta.url);
const CACHE = resolve(import.meta.dirname, '../node_modules/.cache/check-patterns');
const RECHECK_VERSION = (require('recheck/package.json') as { version: string }).version;
const cacheFile = (pattern: string) =>
  resolve(
    CACHE,
    `${createHash('sha256')
      .update(JSON.stringify([RECHECK_VERSION, PARAMETERS, pattern]))
      .digest('hex')}.json`,
  );

function cached(pattern: string): Analysis | undefined {
  try {
    return JSON.parse(readFileSync(cacheFile(pattern), 'utf8')) as Analysis;
  } catch {
    return undefined;
  }
}

/** Only conclusive verdicts are kept: an analysis that failed is tried again next time. */
function keep(pattern: string, analysis: Analysis): void {
  if (analysis.status === 'unknown') return;
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(cacheFile(pattern), JSON.stringify(analysis));
}

/** Judges each pattern (compiled with the `u` flag, as Ajv compiles the spec's). */
export async function checkPatterns(patterns: Map<string, string[]>): Promise<PatternVerdict[]> {
  const verdicts = new Map<string, PatternVerdict>();
  for (const [pattern, where] of patterns) {
    const analysis = cached(pattern);
    if (analysis) verdicts.set(pattern, { pattern, where, ...analysis });
  }
  const queue = [...patterns.keys()].filter((pattern) => !verdicts.has(pattern));
  const workerData = { recheck: require.resolve('recheck'), parameters: PARAMETERS };
  const threads = Math.min(availableParallelism(), queue.length);
  await Promise.all(
    Array.from({ length: threads }, async () => {
      const worker = new Worker(WORKER, { eval: true, workerData });
      try {
        for (let pattern = queue.shift(); pattern !== undefined; pattern = queue.shift()) {
          const analysis = await new Promise<Analysis>((done, fail) => {
            worker.once('message', done);
            worker.once('error', fail);
            worker.postMessage(pattern);
          });
          worker.removeAllListeners('error');
          keep(pattern, analysis);
          verdicts.set(pattern, { pattern, where: patterns.get(pattern)!, ...analysis });
        }
      } finally {
        await worker.terminate();
      }
    }),
  );
  return [...patterns.keys()].map((pattern) => verdicts.get(pattern)!);
}

export function formatVerdict(verdict: PatternVerdict): string {
  const attack = verdict.attack ? `\n    attack: ${verdict.attack}` : '';
  return `${verdict.status} (${verdict.complexity}): ${verdict.pattern}\n    at ${verdict.where.join('\n    at ')}${attack}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const verdicts = await checkPatterns(specPatterns(JSON.parse(readFileSync(process.argv[2] ?? BUNDLED_SPEC, 'utf8'))));
  const refused = verdicts.filter((v) => v.status !== 'safe');
  for (const verdict of refused) console.error(formatVerdict(verdict));
  if (refused.length > 0) {
    console.error(
      `\n${refused.length} of ${verdicts.length} patterns may backtrack super-linearly. Rewrite each so that no two parts can match the same characters (for \`^\\s*(X)?\\s*$\`, \`^\\s*(?:X\\s*)?$\`), keeping its language.`,
    );
    process.exit(1);
  }
  console.log(`${verdicts.length} patterns, each matching in linear time.`);
}
