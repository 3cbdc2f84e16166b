// The chat.usage.recorded consumer (durable `billing-usage` on CHAT_USAGE): debits each exchange once; a usage
// event for a user auth does not know is set aside (a dead letter), never an account opened with a bonus.
import { namespaced, Subjects, UsageRecordedSchema, type UsageRecorded } from '@chat-platform/contracts'
import { BatchConsumer, ServiceCallError, type EventHandler, type Screened } from '@chat-platform/platform'
import { applyUsageEvents, type LedgerRules } from '../ledger.ts'
import type { KnownUsers } from '../known-users.ts'
import type { Books } from '../post.ts'
import { ledgerHandler, type ConsumerSettings } from './ledger-handler.ts'

export const USAGE_CONSUMER = 'billing-usage'

/** Sorts a batch by its users: unknown to auth → set aside; auth unreachable for a user → that user's events wait. */
export async function screenUsers (events: UsageRecorded[], users: KnownUsers): Promise<Screened> {
  const verdict = await users.sort(events.map((e) => e.user_id))
  const screened: Screened = { setAside: new Map(), retry: new Map() }
  events.forEach((e, i) => {
    if (verdict.unknown.has(e.user_id)) screened.setAside.set(i, `user ${e.user_id} is unknown to auth: not charged, no account opened`)
    const err = verdict.unanswered.get(e.user_id)
    if (err) screened.retry.set(i, `auth could not say whether user ${e.user_id} exists: ${err instanceof ServiceCallError ? err.describe() : err.message}`)
  })
  return screened
}

/** How usage events are screened and applied: the live consumer's handler, and billing:replay's. */
export function usageHandler (opts: { books: Books, rules: LedgerRules, knownUsers?: KnownUsers }): EventHandler<typeof UsageRecordedSchema> {
  return ledgerHandler(UsageRecordedSchema, opts.books, (trx, events) => applyUsageEvents(trx, events, opts.rules),
    opts.knownUsers && ((events) => screenUsers(events, opts.knownUsers!)))
}

export function createUsageConsumer (opts: ConsumerSettings & { rules: LedgerRules, knownUsers?: KnownUsers }) {
  const ns = namespaced(opts.namespace)
  return new BatchConsumer({
    ...opts,
    stream: ns.streams.CHAT_USAGE.name,
    durable: USAGE_CONSUMER,
    filterSubject: ns.subject(Subjects.usageRecorded),
    handler: usageHandler(opts)
  })
}
