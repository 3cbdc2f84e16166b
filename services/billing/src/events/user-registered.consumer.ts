// The auth.user.registered consumer (durable `billing-signup` on AUTH_EVENTS): opens the account with the bonus.
import { namespaced, Subjects, UserRegisteredSchema } from '@chat-platform/contracts'
import { BatchConsumer } from '@chat-platform/platform'
import { applyUserRegistered, type LedgerRules } from '../ledger.ts'
import { ledgerHandler, type ConsumerSettings } from './ledger-handler.ts'

export const SIGNUP_CONSUMER = 'billing-signup'

export function createSignupConsumer (opts: ConsumerSettings & { rules: LedgerRules }) {
  const ns = namespaced(opts.namespace)
  return new BatchConsumer({
    ...opts,
    stream: ns.streams.AUTH_EVENTS.name,
    durable: SIGNUP_CONSUMER,
    filterSubject: ns.subject(Subjects.userRegistered),
    handler: ledgerHandler(UserRegisteredSchema, opts.books, (trx, events) => applyUserRegistered(trx, events, opts.rules))
  })
}
