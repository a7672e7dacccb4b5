/**
 * The layers of server/ (.dependency-cruiser.cjs, `npm run lint:deps`): the rule passes on the
 * tree as it is, and fails on a copy of it where imports run up the layers, at file level (a
 * queries file importing its service, a service importing a handler) and at folder level (a
 * resource importing a resource above it; the handler types importing a resource, which the old
 * rule let through because it counted them as a handler), and on a file that is in no layer.
 * Also: every file under server/ is in exactly one layer.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const config = join(root, '.dependency-cruiser.cjs');
const depcruise = join(root, 'node_modules/.bin/depcruise');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** `npm run lint:deps`'s command, run in `dir`: whether it passed (its exit code), and the errors it printed. */
async function cruise(dir: string): Promise<{ passed: boolean; violations: Violation[] }> {
  const run = promisify(execFile)(depcruise, ['server', 'generated', '--config', config], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
  let stdout: string;
  let passed = true;
  try {
    stdout = (await run).stdout;
  } catch (error) {
    // depcruise exits non-zero when it finds an error; its report is still on stdout.
    passed = false;
    stdout = (error as { stdout: string }).stdout;
  }
  // "  error <rule>: <from> → <to>" (a file in no layer, imported by nothing, has no arrow).
  const violations = [...stdout.matchAll(/^\s*error (\S+): (\S+)(?: → (\S+))?$/gm)].map(([, rule, from, to]) => ({
    rule: { name: rule! },
    from: from!,
    to: to ?? '',
  }));
  return { passed, violations };
}

const copies: string[] = [];
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

it('passes on the tree as it is', async () => {
  const { passed, violations } = await cruise(root);
  expect(violations).toEqual([]);
  expect(passed).toBe(true);
}, 120_000);

describe('on a copy with imports planted up the layers', () => {
  const planted: { file: string; line: string; rule: string }[] = [
    // File level, inside one folder: a queries file importing its service, a service its handler.
    {
      file: 'server/clients/clients.queries.ts',
      line: "import type { ClientState } from './clients.service.js';",
      rule: 'queries-look-down-only',
    },
    { file: 'server/tokens/tokens.service.ts', line: "import './tokens.http.js';", rule: 'handlers-only-from-the-wiring' },
    // Folder level: a resource importing one above it; the handler types importing a resource.
    { file: 'server/events/events.service.ts', line: "import '../clients/clients.mapper.js';", rule: 'layer-events-looks-down-only' },
    {
      file: 'server/operations/handler-types.ts',
      line: "import type { WebhookSettings } from '../webhook-delivery/settings.js';",
      rule: 'layer-operations-looks-down-only',
    },
    { file: 'server/idempotency/idempotency.ts', line: "import '../http/router.js';", rule: 'layer-idempotency-looks-down-only' },
    { file: 'server/http/router.ts', line: "import '../app.js';", rule: 'layer-http-looks-down-only' },
  ];

  it('fails, naming each planted import and its rule, and a file in no layer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'layers-'));
    copies.push(dir);
    for (const part of ['server', 'generated', 'tsconfig.json']) cpSync(join(root, part), join(dir, part), { recursive: true });
    for (const { file, line } of planted) appendFileSync(join(dir, file), `\n${line}\n`);
    mkdirSync(join(dir, 'server/stray'));
    writeFileSync(join(dir, 'server/stray/stray.ts'), "import '../shared/errors.js';\n");

    const { passed, violations } = await cruise(dir);
    expect(passed).toBe(false);
    const found = violations.map((v) => `${v.rule.name}: ${v.from}`);
    for (const { file, rule } of planted) expect(found).toContain(`${rule}: ${file}`);
    expect(found).toContain('in-a-layer: server/stray/stray.ts');
  }, 120_000);
});

it('puts every file under server/ in exactly one layer', () => {
  const rules = (createRequire(import.meta.url)(config) as { forbidden: { name: string; from: { path?: string } }[] }).forbidden;
  const layers = rules.filter((rule) => /^layer-.+-looks-down-only$/.test(rule.name)).map((rule) => new RegExp(rule.from.path!));
  // The top layer has no rule of its own (nothing is above it): its pattern is what nothing may import.
  const top = rules.find((rule) => rule.name === 'layer-entry-is-the-top') as unknown as { to: { path: string } };
  layers.push(new RegExp(top.to.path));
  const files = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [relative(root, join(dir, entry.name))] : [],
    );
  const misplaced = files(join(root, 'server'))
    .map((file) => ({ file, layers: layers.filter((layer) => layer.test(file)).length }))
    .filter(({ layers: count }) => count !== 1);
  expect(misplaced).toEqual([]);
});
