// The chat.usage.recorded consumer (durable `billing-usage` on CHAT_USAGE): debits each exchange once.
import { namespaced, Subjects, UsageRecordedSchema } from '@chat-platform/contracts'
import { applyUsageEvents, type LedgerRules } from '../ledger.ts'
import { EventConsumer, type ConsumerOptions } from './consumer.ts'

export const USAGE_CONSUMER = 'billing-usage'

type Common = Omit<ConsumerOptions<typeof UsageRecordedSchema>, 'stream' | 'durable' | 'filterSubject' | 'schema' | 'apply'>

export function createUsageConsumer (opts: Common & { namespace: string, rules: LedgerRules }) {
  const ns = namespaced(opts.namespace)
  return new EventConsumer({
    ...opts,
    stream: ns.streams.CHAT_USAGE.name,
    durable: USAGE_CONSUMER,
    filterSubject: ns.subject(Subjects.usageRecorded),
    schema: UsageRecordedSchema,
    apply: (trx, events) => applyUsageEvents(trx, events, opts.rules)
  })
}
