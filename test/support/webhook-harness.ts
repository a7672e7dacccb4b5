/**
 * For webhook tests through the real app: one test server per file (its settings allow private
 * networks, so receivers on 127.0.0.1 are fine), and receivers and workers that are closed and
 * stopped after each test, receivers first (closing one ends the attempts it holds, so the
 * workers stop at once).
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { ephemeralWebhookSettings, type WebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker, type WebhookWorker, type WebhookWorkerOptions } from '../../server/webhook-delivery/worker.js';
import { startTestServer, type TestServer } from './server.js';
import { type Receiver, startReceiver } from './webhook-worker-fixtures.js';

export interface WebhookHarness {
  settings: WebhookSettings;
  /** The file's server (started before its first test). */
  server(): TestServer;
  /** A receiver answering as `answer` says (200 by default). */
  receiver(answer?: Receiver['answer']): Promise<Receiver>;
  /** A worker on the server's database: polling every 20 ms, 5 s per attempt, unless told otherwise. */
  worker(options?: Partial<WebhookWorkerOptions>): WebhookWorker;
}

export function webhookHarness(): WebhookHarness {
  const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let server: TestServer | undefined;
  const receivers: Receiver[] = [];
  const workers: WebhookWorker[] = [];
  beforeAll(async () => {
    server = await startTestServer({ webhooks: settings });
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(async () => {
    await Promise.all(receivers.splice(0).map((r) => r.close()));
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  });
  return {
    settings,
    server: () => server!,
    async receiver(answer) {
      const started = await startReceiver();
      if (answer) started.answer = answer;
      receivers.push(started);
      return started;
    },
    worker(options = {}) {
      const started = startWebhookWorker({ db: server!.database.db, settings, logger, pollIntervalMs: 20, timeoutMs: 5000, ...options });
      workers.push(started);
      return started;
    },
  };
}
