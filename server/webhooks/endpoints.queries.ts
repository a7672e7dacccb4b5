/**
 * The one module that writes `webhook_endpoints`.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

// ---------------------------------------------------------------------------------------------
// The operations' statements (POST/GET/PATCH/DELETE /webhook-endpoints, rotate-secret).
// ---------------------------------------------------------------------------------------------

export type EndpointsDb = Kysely<Database>;

// ---------------------------------------------------------------------------------------------
//
//
//
//
//
// ---------------------------------------------------------------------------------------------
// The delivery worker's statements (server/webhooks/worker.ts): its place in the feed, and what
// its deliveries' outcomes do to the endpoint (failingSince, disabled after five days).
// ---------------------------------------------------------------------------------------------
