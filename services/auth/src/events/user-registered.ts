// Outbox writer for `auth.user.registered`: called inside the transaction that creates the user.
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type UserRegistered } from '@chat-platform/contracts'
import { writeOutbox } from '@chat-platform/platform'
import { SCHEMA, type Database } from '../db/database.ts'

export async function writeUserRegistered (trx: Kysely<Database>, eventsNamespace: string, event: Pick<UserRegistered, 'user_id' | 'via'>, requestId?: string): Promise<UserRegistered> {
  const subject = namespaced(eventsNamespace).subject(Subjects.userRegistered)
  return await writeOutbox(trx, SCHEMA, subject, { user_id: event.user_id, via: event.via }, requestId)
}
