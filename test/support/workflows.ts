/**
 * Runs the Arazzo workflows of spec/workflows/ with Redocly's `respect` against a test server.
 * Respect sends each step's request, and a step passes only when its success criteria hold and
 * its answer is one the spec documents (status, content type, schema). Each run gets tenants of
 * its own (`workflowInputs`), so that what one workflow made never decides another's answers
 * (the feed and the lists of a fresh organisation hold that workflow's rows only).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestServer } from './server.js';
import { root } from './processes.js';

export const WORKFLOWS_DIR = join(root, 'spec/workflows');

/** The workflow files, by name (`client-life.arazzo.yaml`). */
export function workflowFiles(): string[] {
  return readdirSync(WORKFLOWS_DIR)
    .filter((name) => name.endsWith('.arazzo.yaml'))
    .sort();
}

let tenants = 0;

/** A fresh organisation's token of all scopes, on `plan`. */
async function freshToken(server: TestServer, plan: 'free' | 'pro' | 'studio'): Promise<string> {
  const minted = await server.mint({ orgName: `workflow-${process.pid}-${++tenants}-${Date.now()}`, plan });
  return minted.token;
}

/**
 * What each workflow file needs as inputs, made afresh for every run. A workflow file with no
 * entry here fails the run (test/judges/workflows.test.ts), so a new workflow cannot go unrun.
 */
export const workflowInputs: Record<string, (server: TestServer) => Promise<Record<string, string>>> = {
  'client-life.arazzo.yaml': async (server) => ({ token: await freshToken(server, 'pro') }),
  'idempotent-replay.arazzo.yaml': async (server) => ({
    token: await freshToken(server, 'pro'),
    createKey: randomUUID(),
    updateKey: randomUUID(),
  }),
  'token-mint-revoke.arazzo.yaml': async (server) => ({ token: await freshToken(server, 'pro') }),
  'webhook-endpoint-setup.arazzo.yaml': async (server) => ({
    token: await freshToken(server, 'pro'),
    freePlanToken: await freshToken(server, 'free'),
    // The test server accepts private addresses (test/support/server.ts); nothing listens there,
    // and no change happens in this organisation, so nothing is delivered.
    webhookUrl: 'http://127.0.0.1:9/hooks',
  }),
};

export interface WorkflowRun {
  /** Respect's exit code: 0 when every workflow of the file passed. */
  exitCode: number;
  /** Each failed check: `workflowId/stepId: check - condition or message`. */
  failures: string[];
  /** The steps that ran, as `workflowId/stepId`. */
  executedSteps: string[];
  /** The steps the file declares, as `workflowId/stepId`. */
  declaredSteps: string[];
  /** Respect's own report, for the test's failure message. */
  output: string;
}

interface RespectCheck {
  name: string;
  passed: boolean;
  severity: string;
  condition?: string;
  message?: string;
}
interface RespectStep {
  stepId: string;
  checks: RespectCheck[];
  /** On an attempt that respect retried: the retries its retry action had left. */
  retriesLeft?: number;
}
interface RespectReport {
  files: Record<string, { executedWorkflows: { workflowId: string; executedSteps: RespectStep[] }[] }>;
}

/**
 * Each step's last attempt. Respect reports every attempt of a step that has a `retry` action, the
 * ones it retried marked with the retries left (an exhausted retry's last attempt with 0). A step
 * is decided by its last attempt: one retried may fail, which is what the retry is for (the feed
 * shows an event once every transaction that began before it has ended, so a read can come early).
 */
function lastAttempts<S extends RespectStep>(steps: S[]): S[] {
  return steps.filter((step, i) => !((step.retriesLeft ?? 0) > 0 && steps[i + 1]?.stepId === step.stepId));
}

/** Every `workflowId/stepId` a workflow file declares, in order. */
function declaredSteps(file: string): string[] {
  const steps: string[] = [];
  let workflow = '';
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const workflowId = /^ {2}- workflowId: (\S+)$/.exec(line)?.[1];
    if (workflowId) workflow = workflowId;
    const stepId = /^ {6}- stepId: (\S+)$/.exec(line)?.[1];
    if (stepId) steps.push(`${workflow}/${stepId}`);
  }
  return steps;
}

/** Runs every workflow of `file` (a name in spec/workflows/) against `baseUrl`. */
export async function runWorkflowFile(file: string, baseUrl: string, inputs: Record<string, string>): Promise<WorkflowRun> {
  const path = join(WORKFLOWS_DIR, file);
  const dir = mkdtempSync(join(tmpdir(), 'clients-api-respect-'));
  const report = join(dir, 'report.json');
  const args = [
    'respect',
    path,
    '--server',
    `clientsApi=${baseUrl}`,
    ...Object.entries(inputs).flatMap(([name, value]) => ['--input', `${name}=${value}`]),
    '--json-output',
    report,
  ];
  try {
    const { exitCode, output } = await new Promise<{ exitCode: number; output: string }>((resolve) => {
      execFile(
        join(root, 'node_modules/.bin/redocly'),
        args,
        {
          cwd: root,
          env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
          maxBuffer: 64 * 1024 * 1024,
        },
        (error, stdout, stderr) => resolve({ exitCode: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }),
      );
    });
    let parsed: RespectReport | undefined;
    try {
      parsed = JSON.parse(readFileSync(report, 'utf8')) as RespectReport;
    } catch {
      // No report: respect failed before running anything; the exit code and output say why.
    }
    const workflows = Object.values(parsed?.files ?? {}).flatMap((f) => f.executedWorkflows);
    const steps = workflows.flatMap((w) => lastAttempts(w.executedSteps).map((step) => ({ ...step, workflowId: w.workflowId })));
    return {
      exitCode,
      failures: steps.flatMap((step) =>
        step.checks
          .filter((check) => !check.passed && check.severity === 'error')
          .map((check) => `${step.workflowId}/${step.stepId}: ${check.name} - ${check.condition ?? check.message ?? ''}`),
      ),
      executedSteps: steps.map((step) => `${step.workflowId}/${step.stepId}`),
      declaredSteps: declaredSteps(path),
      output,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
