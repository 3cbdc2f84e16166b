// Outbox writer for `auth.user.deleted` (stream AUTH_EVENTS): called inside the transaction that deletes the user.
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type UserDeleted } from '@chat-platform/contracts'
import { writeOutbox } from '@chat-platform/platform'
import { SCHEMA, type Database } from '../db/database.ts'

export async function writeUserDeleted (trx: Kysely<Database>, eventsNamespace: string, userId: number, requestId?: string): Promise<UserDeleted> {
  const subject = namespaced(eventsNamespace).subject(Subjects.userDeleted)
  return await writeOutbox(trx, SCHEMA, subject, { user_id: userId }, requestId)
}
