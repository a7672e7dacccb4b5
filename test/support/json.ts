import type { ApiErrorBody, ClientResource } from '../../client/index.js';

/** What a raw fetch answered: the success envelope or the error envelope (tests check which). */
export type AnyBody = { data: ClientResource } & ApiErrorBody;

export async function readJson(response: Response): Promise<AnyBody> {
  return (await response.json()) as AnyBody;
}
