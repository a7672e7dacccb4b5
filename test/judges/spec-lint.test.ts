/**
 * The three spec judges of `npm run lint:spec` (Redocly's recommended-strict, Spectral's
 * spectral:oas, the official OpenAPI 3.1 schema) pass a copy of spec/ with this project's configs,
 * and each fails the same copy once a response loses its description (the OpenAPI schema requires
 * one).
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../support/processes.js';

const run = promisify(execFile);
const bin = (name: string) => join(root, 'node_modules/.bin', name);
const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' };

async function exitCode(command: string, args: string[], cwd: string): Promise<number> {
  return run(command, args, { cwd, env }).then(
    () => 0,
    (error: { code?: number }) => error.code ?? 1,
  );
}

/** The judges, as `npm run lint:spec` runs them, on the spec in `dir`. */
async function judge(dir: string): Promise<Record<string, number>> {
  await run(bin('redocly'), ['bundle', 'spec/openapi.yaml', '--ext', 'json', '-o', 'bundled.json'], { cwd: dir, env });
  const [redocly, spectral, schema] = await Promise.all([
    exitCode(bin('redocly'), ['lint'], dir),
    exitCode(bin('spectral'), ['lint', 'bundled.json', '--fail-severity=warn', '--ruleset', '.spectral.yaml'], dir),
    exitCode(bin('validate-api'), ['bundled.json'], dir),
  ]);
  return { redocly, spectral, schema };
}

let copy: string;
beforeAll(() => {
  copy = mkdtempSync(join(tmpdir(), 'clients-api-lint-'));
  cpSync(join(root, 'spec'), join(copy, 'spec'), { recursive: true });
  // The lint-ignore file exists only while some Redocly finding is ignored (today none is).
  for (const file of ['redocly.yaml', '.redocly.lint-ignore.yaml', '.spectral.yaml'])
    if (existsSync(join(root, file))) cpSync(join(root, file), join(copy, file));
});
afterAll(() => rmSync(copy, { recursive: true, force: true }));

describe('the spec judges', () => {
  it('pass the spec as it is', async () => {
    expect(await judge(copy)).toEqual({ redocly: 0, spectral: 0, schema: 0 });
  }, 120_000);

  it('each fail a spec whose response has no description', async () => {
    const file = join(copy, 'spec/paths/healthz.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('      description: The server is up.\n', ''));
    const codes = await judge(copy);
    expect(codes.redocly).not.toBe(0);
    expect(codes.spectral).not.toBe(0);
    expect(codes.schema).not.toBe(0);
  }, 120_000);
});
