import { DopsError } from '@dops/errors';

/** What a client owns: what it made, under the id its credential proved. */
export type OwnedKind = 'job' | 'batch' | 'session' | 'artifact';

/**
 * NOT_FOUND naming `<kind>_id`: the one answer both for an id that does not exist and for one
 * that another client owns, so a caller cannot tell them apart.
 */
export function notFound(kind: OwnedKind, id: string): DopsError {
  const field = `${kind}_id`;
  const description = `${kind} '${id}' not found`;
  return new DopsError('NOT_FOUND', `${field}: ${description}`, { violations: [{ field, description }] });
}

/** `record` when `clientId` owns it; undefined when it is missing or another client's. */
export function ownedBy<T extends { clientId: string }>(
  record: T | undefined,
  clientId: string,
): T | undefined {
  return record && record.clientId === clientId ? record : undefined;
}
