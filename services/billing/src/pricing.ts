// Pricing of a chat exchange (DESIGN §3): the shared rule from contracts (chat admits on the same numbers), plus the ledger's wording.
import { priceTokens, ratiosFor, type ModelPrices, type UsageRecorded } from '@chat-platform/contracts'

export { DEFAULT_RATIOS, parseModelPrices, priceTokens, ratiosFor, type ModelPrices, type Ratios } from '@chat-platform/contracts'

export interface UsageCharge { amount: number, input_ratio: number, output_ratio: number, description: string }

export function priceUsage (event: Pick<UsageRecorded, 'model' | 'prompt_tokens' | 'completion_tokens' | 'usage_source' | 'simulated' | 'purpose'>, prices: ModelPrices): UsageCharge {
  const ratios = ratiosFor(prices, event.model)
  const amount = priceTokens(event.prompt_tokens, event.completion_tokens, ratios)
  return { amount, input_ratio: ratios.input, output_ratio: ratios.output, description: usageDescription(event) }
}

/**
 * Tells the user why they paid, e.g. `对话消耗 · gpt-4o-mini · 输入 812 + 输出 230` (`· 估算` estimated, `· 模拟` simulated);
 * a session's automatic title (`purpose: "title"`) says `会话标题 · …` (events without `purpose` are exchanges).
 */
export function usageDescription (event: Pick<UsageRecorded, 'model' | 'prompt_tokens' | 'completion_tokens' | 'usage_source' | 'simulated' | 'purpose'>): string {
  const base = `${event.purpose === 'title' ? '会话标题' : '对话消耗'} · ${event.model} · 输入 ${event.prompt_tokens} + 输出 ${event.completion_tokens}`
  return base + (event.usage_source === 'estimated' ? ' · 估算' : '') + (event.simulated ? ' · 模拟' : '')
}
