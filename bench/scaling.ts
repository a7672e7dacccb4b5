/**
 * `npm run bench:scaling [-- --quick]`: create throughput (fresh Idempotency-Key on each request)
 * through HAProxy with 1, 2 and 4 server processes (the bundle), straight to PostgreSQL and through
 * PgBouncer in transaction mode, rate limiting off; then with rate limiting on, counters in
 * PostgreSQL and in Redis; each against the bare baseline (bench/bare-server.ts, one process, no
 * balancer). autocannon on loopback, 32 connections. On a 2-core machine the load generator, the
 * balancer, the pooler, PostgreSQL and the servers share the two cores: more processes than cores
 * cannot add throughput, and the figures say what a balancer and a pooler cost, not how far the
 * service scales on a bigger host.
 *
 * Needs /usr/sbin/haproxy and /usr/sbin/pgbouncer, PostgreSQL at BENCH_DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test) and Redis at BENCH_REDIS_URL (redis://127.0.0.1:6379).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { openDatabase } from '../server/db/database.js';
import { migrateOrThrow } from '../server/db/migrate.js';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { freePort, startHaproxy, startPgbouncer, throughPort } from '../test/support/external.js';
import { startServerProcess, stopProcess, type RunningServer } from '../test/support/processes.js';

const root = resolve(import.meta.dirname, '..');
const quick = process.argv.includes('--quick');
const seconds = quick ? 3 : 8;
const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const BUNDLE = 'dist/scaling/server/main.js';

async function createLoad(url: string, token: string): Promise<{ rps: number; failed: number }> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const result = await autocannon({
    url,
    connections: 32,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/clients',
        body: JSON.stringify({ name: 'Scaling Ltd' }),
        headers,
        setupRequest: (request: autocannon.Request) => ({ ...request, headers: { ...headers, 'Idempotency-Key': randomUUID() } }),
      },
    ],
  });
  return { rps: result.requests.average, failed: result.non2xx + result.errors + result.timeouts };
}

execFileSync(join(root, 'node_modules/.bin/tsx'), ['scripts/bundle-server.ts', BUNDLE], { cwd: root });
mkdirSync(join(root, 'dist/scaling/generated'), { recursive: true });
copyFileSync(join(root, 'generated/docs.html'), join(root, 'dist/scaling/generated/docs.html'));

const name = `clients_scaling_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`create database ${name}`);
const databaseUrl = Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
const handle = await openDatabase({ databaseUrl, poolSize: 2 });
await migrateOrThrow(handle.db);
const minted = await mintTokenForOrganisation(handle.db, { orgName: 'Scaling', plan: 'studio' });
await handle.close();
const bouncer = await startPgbouncer(databaseUrl, { mode: 'transaction', poolSize: 20 });
const rows: string[] = [];

try {
  const bare = spawn(join(root, 'node_modules/.bin/tsx'), ['bench/bare-server.ts'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: databaseUrl, ORG_ID: minted.orgId, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const bareUrl = await new Promise<string>((found) => {
    let out = '';
    bare.stdout!.on('data', (chunk: Buffer) => {
      out += chunk;
      const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) found(match[1]!);
    });
  });
  const baseline = (await createLoad(bareUrl, minted.token)).rps;
  await stopProcess(bare);
  const configurations: { label: string; processes: number; env: Record<string, string> }[] = [];
  for (const pooled of [false, true]) {
    for (const processes of [1, 2, 4]) {
      configurations.push({
        label: `${processes} process${processes > 1 ? 'es' : ''}, ${pooled ? 'PgBouncer' : 'direct'}, no rate limit`,
        processes,
        env: pooled
          ? { DATABASE_URL: throughPort(databaseUrl, bouncer.port), DATABASE_POOLING: 'transaction', RATE_LIMIT: '0' }
          : { DATABASE_URL: databaseUrl, RATE_LIMIT: '0' },
      });
    }
  }
  configurations.push(
    { label: '2 processes, direct, counters in PostgreSQL', processes: 2, env: { DATABASE_URL: databaseUrl, RATE_LIMIT: '1000000000' } },
    {
      label: '2 processes, direct, counters in Redis',
      processes: 2,
      env: { DATABASE_URL: databaseUrl, RATE_LIMIT: '1000000000', REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `bench-${name}:` },
    },
  );
  // The same server without a balancer, as `npm run bench` measures it: what HAProxy itself costs.
  for (const [label, env] of [
    ['1 process, no balancer, no rate limit', { RATE_LIMIT: '0' }],
    ['1 process, no balancer, counters in PostgreSQL', { RATE_LIMIT: '1000000000' }],
    ['1 process, no balancer, counters in Redis', { RATE_LIMIT: '1000000000', REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `bench-${name}:` }],
  ] as const) {
    const server = await startServerProcess({ DATABASE_URL: databaseUrl, LOG_LEVEL: 'info', CONCURRENCY_LIMIT: '0', ...env }, [
      'node',
      BUNDLE,
    ]);
    try {
      const { rps, failed } = await createLoad(server.url, minted.token);
      rows.push(`| ${label} | ${Math.round(rps)} | ${(rps / baseline).toFixed(2)}× | ${failed} |`);
      console.error(rows.at(-1));
    } finally {
      await server.stop();
    }
  }
  for (const configuration of configurations) {
    const ports = await Promise.all(Array.from({ length: configuration.processes }, () => freePort()));
    const servers: RunningServer[] = [];
    try {
      for (const port of ports)
        servers.push(
          await startServerProcess({ ...configuration.env, PORT: String(port), LOG_LEVEL: 'info', CONCURRENCY_LIMIT: '0' }, [
            'node',
            BUNDLE,
          ]),
        );
      const haproxy = await startHaproxy(ports);
      try {
        while ((await haproxy.upBackends()).length < ports.length) await new Promise((r) => setTimeout(r, 100));
        const { rps, failed } = await createLoad(`http://127.0.0.1:${haproxy.port}`, minted.token);
        const ratio = (rps / baseline).toFixed(2);
        rows.push(`| ${configuration.label} | ${Math.round(rps)} | ${ratio}× | ${failed} |`);
        console.error(rows.at(-1));
      } finally {
        await haproxy.stop();
      }
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
  }
  console.log(
    `\nCreate throughput through HAProxy (${seconds} s per run, 32 connections); bare baseline: ${Math.round(baseline)} requests/s\n`,
  );
  console.log('| configuration | requests/s | × bare | failed |\n|---|---|---|---|');
  for (const row of rows) console.log(row);
} finally {
  await bouncer.stop();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
}
