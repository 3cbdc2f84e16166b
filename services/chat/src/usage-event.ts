// The one builder of chat.usage.recorded: what an exchange (or the sweeper) charges, priced with the shared rule.
import { randomUUID } from 'node:crypto'
import { priceExchange, type ModelPrices, type UsageRecorded, type UsageSource } from '@chat-platform/contracts'

export interface UsageInput {
  user_id: number
  session_id: number
  /** The reply id reserved with the user message: it names the exchange (usage rows are unique on it). */
  message_id: number
  /** CHAT_MODEL (the name billing's price table uses), also when the offline simulator answered. */
  model: string
  prompt_tokens: number
  completion_tokens: number
  usage_source: UsageSource
  /** The offline simulator answered (no OPENAI_API_KEY): billing's description says so. */
  simulated?: boolean
}

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
