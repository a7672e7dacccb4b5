/**
 * The breaking-change gate (scripts/breaking-change.ts) in a scratch git repository holding a copy
 * of spec/ and of the client package's manifest: with no tag it compares with the commit before;
 * with a tag, with the tag. A breaking change fails it until info.version's major goes up, and the
 * client package's with it; an additive change passes.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../support/processes.js';

let repo: string;
const git = (...args: string[]) =>
  execFileSync('git', ['-c', 'user.name=Judge', '-c', 'user.email=judge@example.com', ...args], { cwd: repo, stdio: 'ignore' });
const edit = (file: string, change: (text: string) => string) => {
  const path = join(repo, file);
  writeFileSync(path, change(readFileSync(path, 'utf8')));
};
const commit = (message: string) => {
  git('add', '-A');
  git('commit', '-q', '-m', message);
};

function gate(): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(join(root, 'node_modules/.bin/tsx'), [join(root, 'scripts/breaking-change.ts')], { cwd: repo }, (error, stdout, stderr) =>
      done({ code: error ? Number(error.code ?? 1) : 0, output: stdout + stderr }),
    );
  });
}

const makeEmailRequired = (text: string) => text.replace('required:\n  - name\n', 'required:\n  - name\n  - email\n');
const bumpVersion = (version: string) => (text: string) => text.replace(/^ {2}version: .*$/m, `  version: ${version}`);
const bumpPackage = (version: string) => (text: string) => text.replace(/^ {2}"version": ".*",$/m, `  "version": "${version}",`);

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'clients-api-gate-'));
  cpSync(join(root, 'spec'), join(repo, 'spec'), { recursive: true });
  cpSync(join(root, 'client/package.json'), join(repo, 'client/package.json'));
  git('init', '-q', '-b', 'main');
  commit('The spec as it is');
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe('the breaking-change gate', () => {
  it('passes an additive change (a new optional field)', async () => {
    edit('spec/schemas/ClientCreate.yaml', (t) =>
      t.replace('properties:\n', 'properties:\n  nickname:\n    type: [string, "null"]\n    description: A short name.\n'),
    );
    commit('Add an optional field');
    const { code, output } = await gate();
    expect(output).toMatch(/the commit before HEAD.*a minor change/);
    expect(code).toBe(0);
  }, 60_000);

  it('fails a breaking change (a field becomes required) while the major version stays', async () => {
    edit('spec/schemas/ClientCreate.yaml', makeEmailRequired);
    commit('Require email');
    const { code, output } = await gate();
    expect(output).toMatch(/breaking: modified .*requestBody.* \(required\)/);
    expect(output).toMatch(/Breaking changes need a new major version/);
    expect(code).toBe(1);
  }, 60_000);

  it('passes that exact change once it is accepted, with its reason, in spec/accepted-breaking-changes.json', async () => {
    const path = /breaking: modified (\S+) \(required\)/.exec((await gate()).output)![1]!;
    const accepted = join(repo, 'spec/accepted-breaking-changes.json');
    writeFileSync(accepted, JSON.stringify([{ path, property: 'required', reason: 'No client could ever send it without.' }]));
    const { code, output } = await gate();
    expect(output).toMatch(
      /accepted \(spec\/accepted-breaking-changes.json\): modified .* \(required\): No client could ever send it without\./,
    );
    expect(code).toBe(0);
    rmSync(accepted);
  }, 60_000);

  it('still fails that change when info.version goes to the next major but the client package stays', async () => {
    edit('spec/openapi.yaml', bumpVersion('1.0.0'));
    git('commit', '-q', '--amend', '-a', '--no-edit');
    const { code, output } = await gate();
    expect(output).toMatch(
      /Breaking changes need a new major version of the client package too: client\/package.json is 0\.1\.0, the base's was 0\.1\.0/,
    );
    expect(code).toBe(1);
  }, 60_000);

  it('passes the same change once info.version and the client package go to the next major', async () => {
    edit('client/package.json', bumpPackage('1.0.0'));
    git('commit', '-q', '--amend', '-a', '--no-edit');
    const { code, output } = await gate();
    expect(output).toMatch(/allowed: info.version's major went up \(0\.1\.0 → 1\.0\.0\), and the client package's \(0\.1\.0 → 1\.0\.0\)/);
    expect(code).toBe(0);
  }, 60_000);

  it('compares with the last release tag when there is one', async () => {
    git('tag', 'v1.0.0');
    edit('spec/openapi.yaml', (t) => t.replace(/\n {2}\/healthz:\n {4}\$ref: paths\/healthz.yaml/, ''));
    commit('Remove the health check');
    edit('spec/openapi.yaml', (t) => t.replace('title: Clients API', 'title: Clients API (renamed)'));
    commit('Rename');
    const { code, output } = await gate();
    expect(output).toMatch(/against v1\.0\.0 \(the last release tag/);
    expect(output).toMatch(/breaking: removed .*healthz/);
    expect(code).toBe(1);
  }, 60_000);
});
