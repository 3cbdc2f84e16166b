// Outbox writer for `auth.token.revoked` (stream AUTH_REVOCATIONS): called inside the transaction that ends the session.
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type TokenRevoked } from '@chat-platform/contracts'
import { writeOutbox } from '@chat-platform/platform'
import { SCHEMA, type Database } from '../db/database.ts'

export async function writeTokenRevoked (trx: Kysely<Database>, eventsNamespace: string, event: Omit<TokenRevoked, 'event_id' | 'occurred_at'>, requestId?: string): Promise<TokenRevoked> {
  const subject = namespaced(eventsNamespace).subject(Subjects.tokenRevoked)
  return await writeOutbox(trx, SCHEMA, subject, { ...event }, requestId)
}
