/**
 * verifyWebhook of the client package, judged by the `standardwebhooks` library itself: the test
 * signs deliveries with it (as the server does), then checks that a good one comes back as the
 * typed event and that every kind of bad one is refused with WebhookVerificationError. The
 * payloads are built from the spec's own example client.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Webhook, WebhookVerificationError as LibraryVerificationError } from 'standardwebhooks';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type ClientCreatedEvent,
  type ClientPreviousAttributes,
  type ClientResource,
  type ClientUpdatedEvent,
  type UnknownEvent,
  type WebhookEvent,
  WebhookVerificationError,
  verifyWebhook,
} from '../../client/index.js';
import spec from '../../generated/openapi.json' with { type: 'json' };

const exampleClient = spec.components.examples.ClientData.value.data as ClientResource;

const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

const created: ClientCreatedEvent = {
  id: randomUUID(),
  type: 'client.created',
  env: 'test',
  createdAt: exampleClient.createdAt,
  data: { object: exampleClient },
};

const updated: ClientUpdatedEvent = {
  id: randomUUID(),
  type: 'client.updated',
  env: 'live',
  createdAt: '2026-12-01T10:00:00.000Z',
  data: {
    object: { ...exampleClient, contactName: 'Hank Scorpio', updatedAt: '2026-12-01T10:00:00.000Z' },
    previousAttributes: { contactName: exampleClient.contactName, updatedAt: exampleClient.updatedAt },
  },
};

/** A delivery as the server sends it: the body, and the three headers signed by each secret given. */
function delivery(event: object, secrets: string[], sentAt = new Date()) {
  const body = JSON.stringify(event);
  const id = (event as { id?: string }).id ?? randomUUID();
  const signature = secrets.map((secret) => new Webhook(secret).sign(id, sentAt, body)).join(' ');
  return {
    body,
    headers: {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
      'webhook-signature': signature,
    } as Record<string, string>,
  };
}

function refusal(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected verifyWebhook to throw');
}

describe('verifyWebhook', () => {
  const secret = newSecret();

  it('returns the event of a good delivery, typed and narrowed by its type', () => {
    const sent = delivery(created, [secret]);
    const event = verifyWebhook(sent.body, sent.headers, secret);
    expect(event).toEqual(created);
    expectTypeOf(event).toEqualTypeOf<WebhookEvent | UnknownEvent>();
    if (event.type !== 'client.created') throw new Error(`unexpected ${String(event.type)}`);
    expectTypeOf(event).toEqualTypeOf<ClientCreatedEvent>();
    expectTypeOf(event.data.object).toEqualTypeOf<ClientResource>();
    expect(event.data.object.name).toBe(exampleClient.name);

    const change = delivery(updated, [secret]);
    const changed = verifyWebhook(change.body, change.headers, secret);
    if (changed.type !== 'client.updated') throw new Error(`unexpected ${String(changed.type)}`);
    expectTypeOf(changed.data.previousAttributes).toEqualTypeOf<ClientPreviousAttributes>();
    expect(changed.data.previousAttributes).toEqual({ contactName: exampleClient.contactName, updatedAt: exampleClient.updatedAt });
  });

  it('refuses a body changed after signing, even by white space (a re-serialised body fails too)', () => {
    const sent = delivery(created, [secret]);
    const tampered = sent.body.replace(exampleClient.name, 'Initech');
    expect(tampered).not.toBe(sent.body);
    for (const body of [tampered, `${sent.body}\n`, JSON.stringify(JSON.parse(sent.body), null, 2)]) {
      const error = refusal(() => verifyWebhook(body, sent.headers, secret));
      expect(error).toBeInstanceOf(WebhookVerificationError);
      expect(error.message).toBe('No matching signature found');
    }
  });

  it('refuses a delivery signed with another secret, or whose id was changed', () => {
    const sent = delivery(created, [newSecret()]);
    expect(refusal(() => verifyWebhook(sent.body, sent.headers, secret))).toBeInstanceOf(WebhookVerificationError);
    const mine = delivery(created, [secret]);
    const replayedAs = { ...mine.headers, 'webhook-id': randomUUID() };
    expect(refusal(() => verifyWebhook(mine.body, replayedAs, secret))).toBeInstanceOf(WebhookVerificationError);
  });

  it('refuses a timestamp more than five minutes old or ahead, even with a good signature', () => {
    for (const [offsetSeconds, message] of [
      [-6 * 60, 'Message timestamp too old'],
      [6 * 60, 'Message timestamp too new'],
    ] as const) {
      const sent = delivery(created, [secret], new Date(Date.now() + offsetSeconds * 1000));
      const error = refusal(() => verifyWebhook(sent.body, sent.headers, secret));
      expect(error).toBeInstanceOf(WebhookVerificationError);
      expect(error.message).toBe(message);
    }
    // Within the tolerance it is good (a minute of clock skew).
    const skewed = delivery(created, [secret], new Date(Date.now() - 60_000));
    expect(verifyWebhook(skewed.body, skewed.headers, secret)).toEqual(created);
  });

  it.each(['webhook-id', 'webhook-timestamp', 'webhook-signature'])('refuses a delivery without %s', (name) => {
    const sent = delivery(created, [secret]);
    const { [name]: _left, ...rest } = sent.headers;
    const error = refusal(() => verifyWebhook(sent.body, rest, secret));
    expect(error).toBeInstanceOf(WebhookVerificationError);
    expect(error.message).toBe('Missing required headers');
  });

  it("throws the library's own class, so instanceof works with either import", () => {
    const sent = delivery(created, [newSecret()]);
    const error = refusal(() => verifyWebhook(sent.body, sent.headers, secret));
    expect(error).toBeInstanceOf(LibraryVerificationError);
    expect(error.name).toBe('WebhookVerificationError');
    expect(WebhookVerificationError).toBe(LibraryVerificationError);
  });

  describe('during a secret rotation', () => {
    const previous = newSecret();
    const next = newSecret();

    it('verifies with either secret held, whichever signed it', () => {
      for (const signer of [previous, next]) {
        const sent = delivery(created, [signer]);
        expect(verifyWebhook(sent.body, sent.headers, [next, previous])).toEqual(created);
        expect(verifyWebhook(sent.body, sent.headers, [previous, next])).toEqual(created);
      }
    });

    it("verifies the server's two signatures (old and new, one header) with either secret alone", () => {
      const sent = delivery(created, [next, previous]);
      expect(sent.headers['webhook-signature']).toMatch(/^v1,\S+ v1,\S+$/);
      expect(verifyWebhook(sent.body, sent.headers, previous)).toEqual(created);
      expect(verifyWebhook(sent.body, sent.headers, next)).toEqual(created);
      expect(refusal(() => verifyWebhook(sent.body, sent.headers, [newSecret(), newSecret()]))).toBeInstanceOf(WebhookVerificationError);
    });

    it('still refuses a stale delivery with every secret, saying why', () => {
      const sent = delivery(created, [previous], new Date(Date.now() - 10 * 60_000));
      expect(refusal(() => verifyWebhook(sent.body, sent.headers, [next, previous])).message).toBe('Message timestamp too old');
    });
  });

  describe('takes the headers and body as servers hand them over', () => {
    it('a fetch Headers object', () => {
      const sent = delivery(created, [secret]);
      expect(verifyWebhook(sent.body, new Headers(sent.headers), secret)).toEqual(created);
    });

    it("a Node-style record with mixed-case names and array values (Node's req.headers)", () => {
      const sent = delivery(created, [secret]);
      const record = {
        'Webhook-Id': sent.headers['webhook-id'],
        'WEBHOOK-TIMESTAMP': [sent.headers['webhook-timestamp']!],
        'webhook-Signature': sent.headers['webhook-signature'],
        'content-type': 'application/json',
        'x-forwarded-for': undefined,
      };
      expect(verifyWebhook(sent.body, record, secret)).toEqual(created);
    });

    it('several signature headers, or one a proxy folded with commas', () => {
      const sentAt = new Date();
      const sent = delivery(created, [newSecret()], sentAt);
      const signatures = [sent.headers['webhook-signature']!, new Webhook(secret).sign(created.id, sentAt, sent.body)];
      const asArray = { ...sent.headers, 'webhook-signature': signatures };
      const folded = new Headers({ ...sent.headers });
      folded.delete('webhook-signature');
      for (const value of signatures) folded.append('webhook-signature', value);
      expect(folded.get('webhook-signature')).toBe(signatures.join(', '));
      expect(verifyWebhook(sent.body, asArray, secret)).toEqual(created);
      expect(verifyWebhook(sent.body, folded, secret)).toEqual(created);
    });

    it('the body as bytes: a Uint8Array, or the Buffer that express.raw gives', () => {
      const sent = delivery({ ...created, data: { object: { ...exampleClient, name: 'Société Générale – 東京' } } }, [secret]);
      const bytes = new TextEncoder().encode(sent.body);
      expect(verifyWebhook(bytes, sent.headers, secret)).toEqual(JSON.parse(sent.body));
      expect(verifyWebhook(Buffer.from(sent.body), sent.headers, secret)).toEqual(JSON.parse(sent.body));
    });

    it('refuses parsed JSON in place of the raw body, and no secret at all, as mistakes of the receiver', () => {
      const sent = delivery(created, [secret]);
      expect(refusal(() => verifyWebhook(JSON.parse(sent.body), sent.headers, secret))).toBeInstanceOf(TypeError);
      expect(refusal(() => verifyWebhook(sent.body, sent.headers, []))).toBeInstanceOf(TypeError);
    });
  });

  describe('what the signature covers but is not a known event', () => {
    it('returns an event of a type this version does not know as an UnknownEvent, not thrown', () => {
      const future = {
        id: randomUUID(),
        type: 'invoice.paid',
        env: 'live',
        createdAt: created.createdAt,
        data: { object: { id: 'inv_1' } },
      };
      const sent = delivery(future, [secret]);
      const event = verifyWebhook(sent.body, sent.headers, secret);
      expect(event).toEqual(future);
      if (
        event.type === 'client.created' ||
        event.type === 'client.updated' ||
        event.type === 'client.deleted' ||
        event.type === 'client.restored' ||
        event.type === 'contact.created' ||
        event.type === 'contact.updated' ||
        event.type === 'contact.deleted' ||
        event.type === 'webhook.test'
      ) {
        throw new Error('an unknown type was taken for a known one');
      }
      expectTypeOf(event).toEqualTypeOf<UnknownEvent>();
      expect(String(event.type)).toBe('invoice.paid');
    });

    it('refuses a signed body that is not an event', () => {
      for (const body of ['not json', '[]', '{"type":"client.created"}', '']) {
        const sentAt = new Date();
        const sent = delivery({}, [secret], sentAt);
        const signature = new Webhook(secret).sign(sent.headers['webhook-id']!, sentAt, body);
        const error = refusal(() => verifyWebhook(body, { ...sent.headers, 'webhook-signature': signature }, secret));
        expect(error, body).toBeInstanceOf(WebhookVerificationError);
        expect(error.message, body).toMatch(/^The signed payload is not (JSON|an event)$/);
      }
    });
  });
});
