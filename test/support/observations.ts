/**
 * The (operation, status) pairs the contract tests observed, shared across vitest's worker
 * processes: each process appends the pairs it sees first to its own file in the run's directory
 * (CONTRACT_OBSERVATIONS_DIR, made by test/support/global-setup.ts), and the gate reads them all.
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const OBSERVATIONS_DIR_VARIABLE = 'CONTRACT_OBSERVATIONS_DIR';

export interface Observation {
  operationId: string;
  status: number;
}

/** Per directory, the pairs this process already wrote. */
const written = new Map<string, Set<string>>();

export function recordObservation(operationId: string, status: number): void {
  const dir = process.env[OBSERVATIONS_DIR_VARIABLE];
  if (!dir) return;
  const key = `${operationId} ${status}`;
  const seen = written.get(dir) ?? written.set(dir, new Set()).get(dir)!;
  if (seen.has(key)) return;
  seen.add(key);
  appendFileSync(join(dir, `${process.pid}.jsonl`), `${JSON.stringify({ operationId, status })}\n`);
}

export function readObservations(dir: string): Observation[] {
  if (!existsSync(dir)) return [];
  const lines = readdirSync(dir)
    .filter((name) => name.endsWith('.jsonl'))
    .flatMap((name) => readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean));
  const unique = new Map(lines.map((line) => [line, JSON.parse(line) as Observation]));
  return [...unique.values()];
}
