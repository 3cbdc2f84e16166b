// The one builder of chat.usage.recorded: what an exchange (or the sweeper) charges, priced with the shared rule.
import { randomUUID } from 'node:crypto'
import { priceExchange, type ModelPrices, type UsageRecorded } from '@chat-platform/contracts'

/** What an exchange (or the sweeper) charges: the event's own fields less what the builder adds. `message_id` is the
 * reply id reserved with the user message (usage rows are unique on it); `model` is CHAT_MODEL, also when the offline
 * simulator answered (`simulated`, which billing's description then says). */
export type UsageInput = Omit<UsageRecorded, 'event_id' | 'occurred_at' | 'estimated_amount' | 'simulated'> & { simulated?: boolean }

/** The usage event with a fresh id and time and chat's price of it (`estimated_amount`, what admission counts). */
export function buildUsageEvent (input: UsageInput, prices: ModelPrices): UsageRecorded {
  const { simulated, ...usage } = input
  return {
    event_id: randomUUID(),
    occurred_at: new Date().toISOString(),
    ...usage,
    estimated_amount: priceExchange(prices, usage.model, usage.prompt_tokens, usage.completion_tokens),
    ...(simulated ? { simulated: true as const } : {})
  }
}
