/**
 * The API reference renders in a real browser with no network but the server's own: headless
 * Chromium opens /docs, finds every operation by its summary and every field of every request body,
 * and any request to anywhere else is blocked and fails the test. Runs wherever Debian's chromium is
 * installed (CI installs it); it is the only test allowed to skip otherwise.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { deref, doc } from '../support/spec-check.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

type Node = Record<string, any>;
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
// A path item holds its operations beside other keys (parameters shared by them all).
const operations = Object.values(doc.paths as Node).flatMap((item: Node) => METHODS.filter((m) => item[m]).map((m) => item[m] as Node));
const requestFields = (op: Node): string[] => {
  const schema = op.requestBody && deref(deref(op.requestBody).node.content?.['application/json']?.schema ?? {}).node;
  return Object.keys(schema?.properties ?? {});
};

describe.runIf(existsSync(CHROMIUM))('the API reference in Chromium', () => {
  let server: TestServer;
  let browser: Browser;
  beforeAll(async () => {
    server = await startTestServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('renders /docs offline, with every operation and every request field', async () => {
    const page = await browser.newPage();
    const elsewhere: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(`${server.baseUrl}/`)) return route.continue();
      elsewhere.push(url);
      return route.abort('blockedbyclient');
    });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));

    const response = await page.goto(`${server.baseUrl}/docs`, { waitUntil: 'load' });
    expect(response?.status()).toBe(200);
    // Chromium accepts br (and gzip): it gets the smaller page, and renders it the same.
    expect(response?.headers()['content-encoding']).toBe('br');
    // As a reader would: open each operation from the side menu (its tag, then its summary).
    for (const op of operations) {
      const menu = page.getByTestId('menu-item-label');
      const summary = menu.getByText(op.summary, { exact: true }).first();
      if (!(await summary.isVisible())) await menu.getByText(op.tags[0], { exact: true }).first().click();
      await summary.click();
      const main = page.locator('main');
      await main.getByText(op.summary, { exact: true }).first().waitFor({ state: 'visible', timeout: 20_000 });
      // biome-ignore lint/performance/useDomNodeTextContent: Playwright's Locator, not a DOM node: what a reader sees
      const text = await main.innerText();
      for (const field of requestFields(op)) expect(text, `${op.operationId}: request field ${field}`).toContain(field);
    }
    if (process.env.DOCS_SCREENSHOT) await page.screenshot({ path: process.env.DOCS_SCREENSHOT });
    expect(elsewhere, 'requests to anywhere but the local server').toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
