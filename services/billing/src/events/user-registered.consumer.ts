// The auth.user.registered consumer (durable `billing-signup` on AUTH_EVENTS): opens the account with the bonus.
import { namespaced, Subjects, UserRegisteredSchema } from '@chat-platform/contracts'
import { applyUserRegistered, type LedgerRules } from '../ledger.ts'
import { EventConsumer, type ConsumerOptions } from './consumer.ts'

export const SIGNUP_CONSUMER = 'billing-signup'

type Common = Omit<ConsumerOptions<typeof UserRegisteredSchema>, 'stream' | 'durable' | 'filterSubject' | 'schema' | 'apply'>

export function createSignupConsumer (opts: Common & { namespace: string, rules: LedgerRules }) {
  const ns = namespaced(opts.namespace)
  return new EventConsumer({
    ...opts,
    stream: ns.streams.AUTH_EVENTS.name,
    durable: SIGNUP_CONSUMER,
    filterSubject: ns.subject(Subjects.userRegistered),
    schema: UserRegisteredSchema,
    apply: (trx, events) => applyUserRegistered(trx, events, opts.rules)
  })
}
