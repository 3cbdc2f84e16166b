// Migrations of the `auth` schema, in order. Frozen in time: never edit one that has shipped, add a new one.
import type { Migration } from 'kysely'
import { addOutboxClaimIndexMigration, addOutboxLeaseMigration, createOutboxMigration } from '@chat-platform/platform'
import { createUsersMigration } from './0002-users.ts'
import { addUserRoleMigration } from './0004-user-role.ts'
import { createSessionsMigration } from './0005-sessions.ts'
import { createEmailCodesMigration } from './0006-email-codes.ts'

export const migrations: Record<string, Migration> = {
  '0001_outbox': createOutboxMigration,
  '0002_users': createUsersMigration,
  '0003_outbox_lease': addOutboxLeaseMigration,
  '0004_user_role': addUserRoleMigration,
  '0005_sessions': createSessionsMigration,
  '0006_email_codes': createEmailCodesMigration,
  '0007_outbox_claim_index': addOutboxClaimIndexMigration
}
