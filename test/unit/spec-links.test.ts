/**
 * The link check of `npm run lint:spec` (scripts/check-links.ts): the spec's links pass, and a
 * copy of the spec with one link broken at a time fails with a message that names the response,
 * the link and what is wrong.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { checkLinks } from '../../scripts/check-links.js';
import { root } from '../support/processes.js';

type Node = Record<string, any>;

/** A copy of the bundled spec with `change` applied to it. */
function specWith(change: (doc: Node) => void): Node {
  const doc = structuredClone(spec) as unknown as Node;
  change(doc);
  return doc;
}

const links = (doc: Node) => doc.components.links as Record<string, Node>;

describe('the link check', () => {
  it('passes the spec, whose links cover every chain', () => {
    const { checked, problems } = checkLinks(spec);
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(30);
    const targets = new Set(Object.values(spec.components.links).map((link) => link.operationId));
    for (const operationId of [
      'getClient',
      'updateClient',
      'deleteClient',
      'restoreClient',
      'listClients',
      'listTokens',
      'revokeToken',
      'listEvents',
      'getWebhookEndpoint',
      'updateWebhookEndpoint',
      'rotateWebhookEndpointSecret',
      'deleteWebhookEndpoint',
      'listWebhookDeliveries',
    ])
      expect(targets, operationId).toContain(operationId);
  });

  it('fails a link to an operation that does not exist', () => {
    const { problems } = checkLinks(
      specWith((doc) => {
        links(doc).ClientRead!.operationId = 'getClients';
      }),
    );
    expect(problems).toContain('createClient 201 → link ClientRead: names operationId getClients, which no operation has');
  });

  it('fails a link that fills a parameter its target does not take', () => {
    const { problems } = checkLinks(
      specWith((doc) => {
        const update = links(doc).ClientUpdate!;
        update.parameters = { id: '$response.body#/data/id', 'header.If-Matches': '$response.header.ETag' };
        links(doc).NextClientsPage!.parameters = { after: '$response.body#/nextCursor' };
      }),
    );
    expect(problems).toContain(
      'createClient 201 → link ClientUpdate: fills parameter header.If-Matches, which updateClient does not take (it takes: path.id, header.If-Match, header.Idempotency-Key)',
    );
    expect(problems.find((p) => p.startsWith('listClients 200 → link NextClientsPage'))).toMatch(
      /fills parameter after, which listClients does not take/,
    );
  });

  it('fails a parameter in the wrong place, and accepts a header name in any case', () => {
    const wrongPlace = specWith((doc) => {
      links(doc).ClientDelete!.parameters['query.If-Match'] = links(doc).ClientDelete!.parameters['header.If-Match'];
      delete links(doc).ClientDelete!.parameters['header.If-Match'];
    });
    expect(checkLinks(wrongPlace).problems).toContain(
      'createClient 201 → link ClientDelete: fills parameter query.If-Match, which deleteClient does not take (it takes: path.id, header.If-Match)',
    );
    const lowerCase = specWith((doc) => {
      links(doc).ClientDelete!.parameters = { id: '$response.body#/data/id', 'header.if-match': '$response.header.etag' };
    });
    expect(checkLinks(lowerCase).problems).toEqual([]);
  });

  it('fails a link that leaves out a path parameter its target requires', () => {
    const { problems } = checkLinks(
      specWith((doc) => {
        links(doc).TokenRevoke!.parameters = {};
      }),
    );
    expect(problems).toContain('createToken 201 → link TokenRevoke: does not fill path parameter id, which revokeToken requires');
  });

  it('fails a requestBody on an operation that takes none', () => {
    const { problems } = checkLinks(
      specWith((doc) => {
        links(doc).ClientRestore!.requestBody = { reason: 'undo' };
      }),
    );
    expect(problems).toContain('createClient 201 → link ClientRestore: sets a requestBody, but restoreClient takes none');
  });

  it('fails an operationRef that does not resolve, and accepts one that does', () => {
    const broken = specWith((doc) => {
      delete links(doc).ClientRead!.operationId;
      links(doc).ClientRead!.operationRef = '#/paths/~1client~1{id}/get';
    });
    expect(checkLinks(broken).problems).toContain(
      'createClient 201 → link ClientRead: has operationRef #/paths/~1client~1{id}/get, which does not resolve to an operation of this document',
    );
    const resolving = specWith((doc) => {
      delete links(doc).ClientRead!.operationId;
      links(doc).ClientRead!.operationRef = '#/paths/~1clients~1{id}/get';
    });
    expect(checkLinks(resolving).problems).toEqual([]);
  });

  it('fails a value the source response does not have', () => {
    const { problems } = checkLinks(
      specWith((doc) => {
        links(doc).ClientRead!.parameters = { id: '$response.body#/id' };
        links(doc).ClientUpdate!.parameters['header.If-Match'] = '$response.header.Etags';
        links(doc).NextWebhookDeliveriesPage!.parameters.id = '$request.path.endpointId';
      }),
    );
    expect(problems).toContain(
      'createClient 201 → link ClientRead: parameter id reads $response.body#/id, but no schema of the response body of createClient has /id',
    );
    expect(problems).toContain(
      'createClient 201 → link ClientUpdate: parameter header.If-Match reads $response.header.Etags, but the response of createClient declares no header Etags',
    );
    expect(problems).toContain(
      'listWebhookDeliveries 200 → link NextWebhookDeliveriesPage: parameter id reads $request.path.endpointId, but listWebhookDeliveries takes no path parameter endpointId',
    );
  });

  it('fails `npm run lint:spec:links` on a broken spec, naming the problem', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'clients-api-links-'));
    try {
      const file = join(dir, 'openapi.json');
      writeFileSync(
        file,
        JSON.stringify(
          specWith((doc) => {
            links(doc).EventClient!.operationId = 'readClient';
          }),
        ),
      );
      const run = promisify(execFile)(join(root, 'node_modules/.bin/tsx'), ['scripts/check-links.ts', file], { cwd: root });
      await expect(run).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining('getEvent 200 → link EventClient: names operationId readClient, which no operation has'),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
