// Pricing of a chat exchange (DESIGN §3): amount = ceil(prompt × input_ratio + completion × output_ratio).
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'
import type { UsageRecorded } from '@chat-platform/contracts'

// Ratios are exact to a millionth: prices are computed in integer micro-tokens so ceil() never sees float noise.
const MICRO = 1_000_000
const Ratio = Type.Number({ minimum: 0, maximum: 1_000_000 })
const ModelPricesSchema = Type.Record(Type.String({ minLength: 1 }), Type.Object({ input: Ratio, output: Ratio }, { additionalProperties: false }))
export type ModelPrices = Static<typeof ModelPricesSchema>

export interface Ratios { input: number, output: number }
export const DEFAULT_RATIOS: Ratios = { input: 1, output: 1 }

/** Parses MODEL_PRICES; throws with a readable reason. */
export function parseModelPrices (json: string): ModelPrices {
  let value: unknown
  try { value = JSON.parse(json) } catch { throw new Error('is not valid JSON') }
  if (!Value.Check(ModelPricesSchema, value)) {
    const e = Value.Errors(ModelPricesSchema, value)[0]
    throw new Error(`must look like {"gpt-4o-mini":{"input":1,"output":1}}: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`)
  }
  for (const [model, r] of Object.entries(value)) {
    for (const ratio of [r.input, r.output]) {
      if (Math.abs(Math.round(ratio * MICRO) - ratio * MICRO) > 1e-6) throw new Error(`ratio ${ratio} of ${model} has more than 6 decimals`)
    }
  }
  return value
}

/** The ratios of `model`: its own entry, else the "*" entry, else 1 and 1. */
export function ratiosFor (prices: ModelPrices, model: string): Ratios {
  return prices[model] ?? prices['*'] ?? DEFAULT_RATIOS
}

/** ceil(prompt × input + completion × output), exactly. */
export function priceTokens (prompt: number, completion: number, ratios: Ratios): number {
  const micro = BigInt(prompt) * BigInt(Math.round(ratios.input * MICRO)) + BigInt(completion) * BigInt(Math.round(ratios.output * MICRO))
  const m = BigInt(MICRO)
  return Number((micro + m - 1n) / m)
}

export interface UsageCharge { amount: number, input_ratio: number, output_ratio: number, description: string }

export function priceUsage (event: Pick<UsageRecorded, 'model' | 'prompt_tokens' | 'completion_tokens' | 'usage_source'>, prices: ModelPrices): UsageCharge {
  const ratios = ratiosFor(prices, event.model)
  const amount = priceTokens(event.prompt_tokens, event.completion_tokens, ratios)
  return { amount, input_ratio: ratios.input, output_ratio: ratios.output, description: usageDescription(event) }
}

/** Tells the user why they paid, e.g. `对话消耗 · gpt-4o-mini · 输入 812 + 输出 230`. */
export function usageDescription (event: Pick<UsageRecorded, 'model' | 'prompt_tokens' | 'completion_tokens' | 'usage_source'>): string {
  const base = `对话消耗 · ${event.model} · 输入 ${event.prompt_tokens} + 输出 ${event.completion_tokens}`
  return event.usage_source === 'estimated' ? `${base} · 估算` : base
}
