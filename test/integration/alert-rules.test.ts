/**
 * The alerting rules that come with the metrics (ops/prometheus/alerts.yml): `promtool check rules`
 * and `promtool test rules` pass (promtool from Debian's `prometheus` package, installed by
 * .ci/run), every alert has a case that fires and one that stays quiet, each carries `for`, a
 * severity and a runbook section that exists, and every metric and label an expression names is
 * one the server exposes (promtool cannot tell: a misspelt metric is an alert that never fires).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createMetrics } from '../../server/metrics/metrics.js';

const PROMTOOL = '/usr/bin/promtool';
const DIR = join(import.meta.dirname, '../../ops/prometheus');
const RULES = join(DIR, 'alerts.yml');
const RULE_TESTS = join(DIR, 'alerts.test.yml');
const RUNBOOK = join(DIR, 'README.md');

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTests {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

const rules: AlertRule[] = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);

/** Labels Prometheus adds to every series of a scrape, and `up`, the one series it makes itself. */
const TARGET_LABELS = ['job', 'instance'];
const PROMETHEUS_SERIES: KnownSeries = new Map([['up', { labels: new Set(TARGET_LABELS), values: new Map() }]]);

/** A series name the server exposes, its labels, and the values a label is known to take (those seeded at 0). */
type KnownSeries = Map<string, { labels: Set<string>; values: Map<string, Set<string>> }>;

/** Every series the server's registry exposes, a histogram's `_bucket`, `_sum` and `_count` included. */
async function exposedSeries(registry: Registry): Promise<KnownSeries> {
  const known: KnownSeries = new Map(PROMETHEUS_SERIES);
  for (const metric of await registry.getMetricsAsJSON()) {
    const { name, type } = metric;
    const labelNames = (registry.getSingleMetric(name) as unknown as { labelNames?: string[] }).labelNames ?? [];
    const values = new Map<string, Set<string>>();
    for (const value of metric.values) {
      for (const [label, v] of Object.entries(value.labels)) {
        if (!values.has(label)) values.set(label, new Set());
        values.get(label)!.add(String(v));
      }
    }
    const labels = new Set([...labelNames, ...values.keys(), ...TARGET_LABELS]);
    if (String(type) === 'histogram') {
      known.set(`${name}_bucket`, { labels: new Set([...labels, 'le']), values });
      known.set(`${name}_sum`, { labels, values });
      known.set(`${name}_count`, { labels, values });
    } else {
      known.set(name, { labels, values });
    }
  }
  return known;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);

/**
 * What a PromQL expression names that a scrape must provide: series selectors (name and label
 * matchers) and the labels of its `by (...)`/`on (...)` clauses. A plain reading, not a parser: enough
 * for the rules of this repository, whose selectors always start with a metric name.
 */
function namesInExpression(expr: string) {
  const grouping: string[] = [];
  const withoutGrouping = expr.replace(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g, (_all, labels: string) => {
    grouping.push(
      ...labels
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  const withoutRanges = withoutGrouping.replace(/\[[^\]]*\]/g, ' ');
  const selectors: { name: string; matchers: { label: string; op: string; value: string }[] }[] = [];
  for (const match of withoutRanges.matchAll(/([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?/g)) {
    const [, name, braces, call] = match as unknown as [string, string, string | undefined, string | undefined];
    if (call && !braces) continue; // a function
    if (KEYWORDS.has(name)) continue;
    const previous = withoutRanges[match.index! - 1];
    if (previous && /[\d.]/.test(previous)) continue; // the exponent or suffix of a number
    const matchers = [...(braces ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map(([, label, op, value]) => ({
      label: label!,
      op: op!,
      value: value!,
    }));
    selectors.push({ name, matchers });
  }
  return { selectors, grouping };
}

/** What an expression names that the server does not expose: empty when every name is real. */
function unknownNames(expr: string, known: KnownSeries): string[] {
  const problems: string[] = [];
  const { selectors, grouping } = namesInExpression(expr);
  for (const { name, matchers } of selectors) {
    const series = known.get(name);
    if (!series) {
      problems.push(`no metric ${name}`);
      continue;
    }
    for (const { label, op, value } of matchers) {
      if (!series.labels.has(label)) problems.push(`${name} has no label ${label}`);
      const values = series.values.get(label);
      if (op === '=' && values && !values.has(value))
        problems.push(`${name}{${label}} is never "${value}" (only ${[...values].join(', ')})`);
    }
  }
  for (const label of grouping) {
    if (!selectors.some(({ name }) => known.get(name)?.labels.has(label))) problems.push(`no metric of the expression has label ${label}`);
  }
  return problems;
}

/** A heading's anchor as GitHub makes it. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replace(/ /g, '-');

describe('ops/prometheus/alerts.yml', () => {
  it('names only metrics and labels the server exposes', async () => {
    const metrics = createMetrics();
    // Registered only with a replica (DATABASE_REPLICA_URL).
    metrics.watchReplica({ stalenessSeconds: () => 0 });
    const known = await exposedSeries(metrics.registry);
    expect(known.has('http_server_request_duration_seconds_bucket')).toBe(true);
    expect(known.get('rate_limit_refusals_total')?.values.get('limiter')).toEqual(new Set(['tenant', 'address', 'concurrency']));

    expect(rules.length).toBeGreaterThan(0);
    const problems = Object.fromEntries(rules.map((rule) => [rule.alert, unknownNames(rule.expr, known)]));
    expect(problems).toEqual(Object.fromEntries(rules.map((rule) => [rule.alert, []])));

    // The check itself: it finds a misspelt metric, a label a metric lacks, a value a label never takes.
    expect(unknownNames('sum by (job) (rate(http_requests_total{job="clients-api"}[5m])) > 0', known)).toEqual([
      'no metric http_requests_total',
      'no metric of the expression has label job',
    ]);
    expect(unknownNames('rate(rate_limit_refusals_total{limiter="tenants", status="429"}[5m]) > 1', known)).toEqual([
      'rate_limit_refusals_total{limiter} is never "tenants" (only tenant, address, concurrency)',
      'rate_limit_refusals_total has no label status',
    ]);
    expect(unknownNames('max by (pool) (nodejs_eventloop_lag_p99_seconds) > 0.2', known)).toEqual([
      'no metric of the expression has label pool',
    ]);
  });

  it('gives every alert a for, a severity, a summary, a description and a runbook section that exists', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8');
    const anchors = new Set([...runbook.matchAll(/^#{2,4} (.+)$/gm)].map(([, heading]) => anchor(heading!)));
    for (const rule of rules) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      expect(rule.annotations?.runbook_url, rule.alert).toBe(`ops/prometheus/README.md#${rule.alert.toLowerCase()}`);
      expect(anchors, rule.alert).toContain(rule.alert.toLowerCase());
    }
  });

  it('has, for every alert, a case where it fires and one where it stays quiet', () => {
    const { tests } = parse(readFileSync(RULE_TESTS, 'utf8')) as RuleTests;
    const cases = tests.flatMap((test) => test.alert_rule_test ?? []);
    for (const rule of rules) {
      const own = cases.filter((c) => c.alertname === rule.alert);
      expect(
        own.some((c) => c.exp_alerts.length > 0),
        `${rule.alert} fires`,
      ).toBe(true);
      expect(
        own.some((c) => c.exp_alerts.length === 0),
        `${rule.alert} stays quiet`,
      ).toBe(true);
    }
    // No test of an alert that is not there.
    expect(new Set(cases.map((c) => c.alertname))).toEqual(new Set(rules.map((r) => r.alert)));
  });
});

describe.runIf(existsSync(PROMTOOL))('promtool', () => {
  const promtool = (...args: string[]) => {
    const result = spawnSync(PROMTOOL, args, { encoding: 'utf8' });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };

  it('check rules: the rules are valid', () => {
    const result = promtool('check', 'rules', RULES);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('test rules: every alert fires where it should and stays quiet where it should', () => {
    const result = promtool('test', 'rules', RULE_TESTS);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('SUCCESS');
  });
});
