/**
 * Which Node.js the suite runs on. The tests start processes three ways: `node` from PATH (the
 * built bundle), `node_modules/.bin/tsx` (whose `#!/usr/bin/env node` also takes PATH's node) and
 * `process.execPath` (vitest's own node). All three must be one runtime, or a run "on Node 24"
 * would test the servers it spawns on another. CI runs the PostgreSQL suite with Node 24 first on
 * PATH (scripts/node-binary.sh) and sets EXPECT_NODE_MAJOR=24, so a run that silently fell back to
 * the machine's Node fails here instead of passing on the wrong runtime.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { root } from '../support/processes.js';

const run = promisify(execFile);
const PRINT_VERSION = ['-e', 'process.stdout.write(process.version)'];

it('runs on the Node line CI asks for (EXPECT_NODE_MAJOR), when it asks', () => {
  const expected = process.env.EXPECT_NODE_MAJOR;
  if (!expected) return;
  expect(process.versions.node.split('.')[0]).toBe(expected);
});

it('starts node from PATH, tsx and process.execPath on the Node that runs vitest', async () => {
  const spawned = {
    'node from PATH': (await run('node', PRINT_VERSION)).stdout,
    'node_modules/.bin/tsx': (await run(resolve(root, 'node_modules/.bin/tsx'), PRINT_VERSION, { cwd: root })).stdout,
    'process.execPath': (await run(process.execPath, PRINT_VERSION)).stdout,
  };
  expect(spawned).toEqual({
    'node from PATH': process.version,
    'node_modules/.bin/tsx': process.version,
    'process.execPath': process.version,
  });
});
