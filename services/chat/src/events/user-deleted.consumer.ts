// The auth.user.deleted consumer (durable `chat-user-deleted` on AUTH_EVENTS): deletes the user's sessions, messages and idempotency records.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { namespaced, Subjects, UserDeletedSchema } from '@chat-platform/contracts'
import { BatchConsumer, type ApplyOutcome, type EventHandler, type SetAside } from '@chat-platform/platform'
import type { Database } from '../db/database.ts'

export const USER_DELETED_CONSUMER = 'chat-user-deleted'

/**
 * Deleting is idempotent (a redelivered event deletes nothing more), so no processed-event record is kept. Usage
 * records (`usage`, `user_charges`) stay: they are what billing charged, kept under the bare user id like its
 * ledger. A malformed event is logged and dropped (chat keeps no dead-letter table).
 */
export function userDeletedHandler (db: Kysely<Database>, log: Logger): EventHandler<typeof UserDeletedSchema> {
  const logAside = (rows: SetAside[]) => {
    for (const r of rows) log.error({ stream: r.stream, seq: r.stream_seq, subject: r.subject, payload: r.payload.slice(0, 500), error: r.error }, 'auth.user.deleted event set aside')
  }
  return {
    schema: UserDeletedSchema,
    async apply (events, setAside) {
      const ids = [...new Set(events.map((e) => e.user_id))]
      if (ids.length > 0) {
        await db.transaction().execute(async (trx) => {
          // Messages go with their sessions (on delete cascade); a message is also removed by its own user_id.
          await trx.deleteFrom('messages').where('user_id', 'in', ids).execute()
          await trx.deleteFrom('sessions').where('user_id', 'in', ids).execute()
          // Stored answers of idempotent sends hold message text.
          await trx.deleteFrom('idempotency_keys').where('user_id', 'in', ids).execute()
        })
        log.info({ user_ids: ids }, 'deleted users: sessions and messages removed')
      }
      logAside(setAside)
      return new Map<string, ApplyOutcome>(events.map((e) => [e.event_id, 'applied']))
    },
    async setAside (rows) { logAside(rows) }
  }
}

export function createUserDeletedConsumer (opts: { nc: NatsConnection, db: Kysely<Database>, log: Logger, namespace: string }) {
  const ns = namespaced(opts.namespace)
  return new BatchConsumer({
    nc: opts.nc,
    log: opts.log,
    stream: ns.streams.AUTH_EVENTS.name,
    durable: USER_DELETED_CONSUMER,
    filterSubject: ns.subject(Subjects.userDeleted),
    handler: userDeletedHandler(opts.db, opts.log),
    ackWaitMs: 30_000,
    batchSize: 50,
    retryDelayMs: 1_000
  })
}
