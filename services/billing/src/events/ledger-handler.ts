// How billing applies a subject's events in the platform's batch consumer: one transaction with the dead letters, then the Redis copy.
import type { TSchema, Static } from 'typebox'
import type { Kysely } from 'kysely'
import type { BatchConsumerOptions, EventHandler, Screened } from '@chat-platform/platform'
import type { Database } from '../db/database.ts'
import { insertDeadLetters } from '../db/repositories/dead-letters.ts'
import type { ApplyResult } from '../ledger.ts'
import { commitAndCache, type Books } from '../post.ts'

/** What every billing consumer is configured with (the subject-specific parts come from its module). */
export type ConsumerSettings = Omit<BatchConsumerOptions<TSchema>, 'stream' | 'durable' | 'filterSubject' | 'handler'> & { books: Books, namespace: string }

/**
 * A handler applying events with `apply` in the transaction that also stores the batch's set-aside events
 * (`dead_letters`); after the commit the Redis copy of the balances it changed is written (`commitAndCache`).
 */
export function ledgerHandler<S extends TSchema> (
  schema: S,
  books: Books,
  apply: (trx: Kysely<Database>, events: Static<S>[]) => Promise<ApplyResult>,
  screen?: (events: Static<S>[]) => Promise<Screened>
): EventHandler<S> {
  return {
    schema,
    screen,
    apply: async (events, setAside) => (await commitAndCache(books, async (trx) => {
      const result = await apply(trx, events)
      await insertDeadLetters(trx, setAside)
      return result
    })).outcomes,
    setAside: (rows) => insertDeadLetters(books.db, rows)
  }
}
