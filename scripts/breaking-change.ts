/**
 * Breaking-change gate: compares spec/ with the spec of a base version and fails on a breaking
 * change unless info.version's major went up, and with it the major version of the client package
 * (client/package.json, `@clients-api/client`, whose version follows info.version): a breaking
 * change to the API is a breaking change to the package's types.
 *
 *   npm run check:breaking [-- --base <git ref>]
 *
 * The base is, in order: --base; the last release tag (`git describe --tags`); the merge base with
 * main when on another branch; the commit before HEAD on main itself (what the last merge changed).
 * With none of those (a first commit, a shallow clone), or no spec/ at the base, there is nothing
 * to compare and the gate passes, saying so. Both sides are bundled by Redocly and rated by
 * `redocly diff` with its diff-recommended rules (redocly.yaml).
 *
 * A change that is breaking only to the letter (the spec now refuses what the server could never
 * do) can be accepted without a new major version by naming it, with its reason, in
 * spec/accepted-breaking-changes.json: `[{ "path": "<the change's path>", "property": "pattern",
 * "reason": "..." }]`. The gate lists every accepted change it meets, and entries no change matches.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const tools = resolve(import.meta.dirname, '..');
const redocly = join(tools, 'node_modules/.bin/redocly');
const quiet = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' };

const git = (args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
const tryGit = (args: string[]) => {
  try {
    return git(args);
  } catch {
    return undefined;
  }
};

function chooseBase(): { ref: string; why: string } | undefined {
  const given = process.argv.indexOf('--base');
  if (given > 0 && process.argv[given + 1]) return { ref: process.argv[given + 1]!, why: 'given with --base' };
  const tag = tryGit(['describe', '--tags', '--abbrev=0']);
  if (tag) return { ref: tag, why: 'the last release tag' };
  const head = tryGit(['rev-parse', 'HEAD']);
  for (const main of ['main', 'origin/main']) {
    const mergeBase = tryGit(['merge-base', 'HEAD', main]);
    if (mergeBase && mergeBase !== head) return { ref: mergeBase, why: `the merge base with ${main}` };
  }
  const parent = tryGit(['rev-parse', '--verify', '--quiet', 'HEAD^']);
  return parent ? { ref: parent, why: 'the commit before HEAD (no release tag yet)' } : undefined;
}

const major = (version: unknown) => Number(/^(\d+)\./.exec(String(version))?.[1] ?? NaN);

interface AcceptedChange {
  path: string;
  property?: string;
  reason: string;
}

const ACCEPTED_FILE = 'spec/accepted-breaking-changes.json';

interface DiffReport {
  /** Absent when redocly diff finds nothing at all. */
  bump?: 'none' | 'patch' | 'minor' | 'major';
  infoVersions: { base: string; revision: string };
  changes: { path: string; kind: string; impact: string; property?: string }[];
}

const CLIENT_PACKAGE = 'client/package.json';

/**
 * The client package's version here and at the base. A base from before the package existed
 * counts as the base spec's version, which the package's follows.
 */
function packageVersions(ref: string, baseSpecVersion: string): { from: string; to: string } | undefined {
  if (!existsSync(CLIENT_PACKAGE)) return undefined;
  const to = String((JSON.parse(readFileSync(CLIENT_PACKAGE, 'utf8')) as { version?: unknown }).version);
  const atBase = tryGit(['show', `${ref}:${CLIENT_PACKAGE}`]);
  const from = atBase ? String((JSON.parse(atBase) as { version?: unknown }).version) : baseSpecVersion;
  return { from, to };
}

function bundle(specRoot: string, out: string): void {
  execFileSync(redocly, ['bundle', join(specRoot, 'openapi.yaml'), '--ext', 'json', '-o', out], { env: quiet, stdio: 'ignore' });
}

function main(): number {
  const base = chooseBase();
  if (!base) {
    console.log('Breaking-change gate: no base version to compare with (no tag, no earlier commit).');
    return 0;
  }
  const scratch = mkdtempSync(join(tmpdir(), 'clients-api-breaking-'));
  try {
    const archive = execFileSync('git', ['archive', base.ref, '--', 'spec'], {
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    execFileSync('tar', ['-x', '-C', scratch], { input: archive });
    if (!existsSync(join(scratch, 'spec/openapi.yaml'))) {
      console.log(`Breaking-change gate: ${base.ref} (${base.why}) has no spec/ to compare with.`);
      return 0;
    }
    bundle(join(scratch, 'spec'), join(scratch, 'base.json'));
    bundle('spec', join(scratch, 'head.json'));
    const output = join(scratch, 'diff.json');
    // Exits non-zero on a major change; the report says what it found either way.
    execFileSync(
      redocly,
      [
        'diff',
        join(scratch, 'base.json'),
        join(scratch, 'head.json'),
        '--config',
        join(tools, 'redocly.yaml'),
        '--format',
        'json',
        '--fail-on',
        'none',
        '-o',
        output,
      ],
      {
        env: quiet,
        stdio: 'ignore',
      },
    );
    const report = JSON.parse(readFileSync(output, 'utf8')) as DiffReport;
    const { base: from, revision: to } = report.infoVersions;
    const accepted: AcceptedChange[] = existsSync(ACCEPTED_FILE) ? JSON.parse(readFileSync(ACCEPTED_FILE, 'utf8')) : [];
    const acceptance = (c: DiffReport['changes'][number]) =>
      accepted.find((a) => a.path === c.path && (a.property ?? c.property) === c.property);
    const majors = report.changes.filter((c) => c.impact === 'major');
    const breaking = majors.filter((c) => !acceptance(c));
    console.log(
      `Breaking-change gate: spec/ (version ${to}) against ${base.ref} (${base.why}, version ${from}): ${!report.bump || report.bump === 'none' ? 'no change' : `a ${report.bump} change`}.`,
    );
    for (const c of majors.filter(acceptance))
      console.log(`  accepted (${ACCEPTED_FILE}): ${c.kind} ${c.path}${c.property ? ` (${c.property})` : ''}: ${acceptance(c)!.reason}`);
    for (const a of accepted.filter((a) => !majors.some((c) => acceptance(c) === a)))
      console.log(`  no longer needed in ${ACCEPTED_FILE}: ${a.path}`);
    if (breaking.length === 0) return 0;
    for (const c of breaking) console.log(`  breaking: ${c.kind} ${c.path}${c.property ? ` (${c.property})` : ''}`);
    const pkg = packageVersions(base.ref, from);
    if (major(to) > major(from) && (!pkg || major(pkg.to) > major(pkg.from))) {
      console.log(
        `  allowed: info.version's major went up (${from} → ${to})${pkg ? `, and the client package's (${pkg.from} → ${pkg.to})` : ''}.`,
      );
      return 0;
    }
    if (major(to) <= major(from)) {
      console.error(
        `Breaking changes need a new major version: raise info.version in spec/openapi.yaml above ${from}'s major, or keep the old behaviour.`,
      );
    } else {
      console.error(
        `Breaking changes need a new major version of the client package too: ${CLIENT_PACKAGE} is ${pkg!.to}, the base's was ${pkg!.from} (\`npm run generate\` sets it from info.version).`,
      );
    }
    return 1;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

process.exitCode = main();
