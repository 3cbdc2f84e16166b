// Migrations of the `chat` schema, in order. Frozen in time: never edit one that has shipped, add a new one.
import type { Migration } from 'kysely'
import { addOutboxClaimIndexMigration, addOutboxLeaseMigration, createOutboxMigration } from '@chat-platform/platform'
import { createChatTablesMigration } from './0002-chat.ts'
import { addChargesMigration } from './0004-charges.ts'
import { addUsageIdempotencyMigration } from './0005-usage-idempotency.ts'
import { addUsageSimulatedMigration } from './0006-usage-simulated.ts'
import { addSessionSettingsMigration } from './0007-session-settings.ts'
import { addSupersededMigration } from './0008-superseded.ts'

export const migrations: Record<string, Migration> = {
  '0001_outbox': createOutboxMigration,
  '0002_chat': createChatTablesMigration,
  '0003_outbox_lease': addOutboxLeaseMigration,
  '0004_charges': addChargesMigration,
  '0005_usage_idempotency': addUsageIdempotencyMigration,
  '0006_usage_simulated': addUsageSimulatedMigration,
  '0007_session_settings': addSessionSettingsMigration,
  '0008_superseded': addSupersededMigration,
  '0009_outbox_claim_index': addOutboxClaimIndexMigration
}
