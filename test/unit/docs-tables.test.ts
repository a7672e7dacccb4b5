/**
 * The tables a newcomer reads are the code's, not a copy that drifts: the README's plans table is
 * server/plans/plans.ts's PLANS, row for row, and docs/configuration.md names every environment
 * variable the server reads (server/config.ts, and tracing's in server/telemetry.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PLANS } from '../../server/plans/plans.js';

const root = join(import.meta.dirname, '..', '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

/** The rows of the first Markdown table after `heading`, as arrays of trimmed cells. */
function tableAfter(markdown: string, heading: string): string[][] {
  const from = markdown.indexOf(heading);
  expect(from, heading).toBeGreaterThanOrEqual(0);
  const lines = markdown.slice(from).split('\n');
  const first = lines.findIndex((line) => line.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim()),
    );
  }
  return rows;
}

describe("the README's plans table", () => {
  it('is the plans table of server/plans/plans.ts: each plan, its client limit and its features', () => {
    const rows = tableAfter(read('README.md'), '## Plans');
    const fromCode = Object.entries(PLANS).map(([name, limits]) => [
      `\`${name}\``,
      limits.maxActiveClients === null ? 'unlimited' : String(limits.maxActiveClients),
      limits.features.has('webhooks') ? 'yes' : 'no',
      limits.features.has('clients.requirePoNumber') ? 'yes' : 'no',
    ]);
    expect(rows).toEqual(fromCode);
  });
});

describe('docs/configuration.md', () => {
  it('names every environment variable the server reads', () => {
    const source = read('server/config.ts') + read('server/telemetry.ts');
    const read_ = new Set(
      [...source.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g), ...source.matchAll(/'([A-Z][A-Z0-9]*_[A-Z0-9_]+|PORT)'/g)].map((m) => m[1]!),
    );
    expect(read_.size).toBeGreaterThan(30);
    const documented = read('docs/configuration.md');
    const missing = [...read_].filter((name) => !documented.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
