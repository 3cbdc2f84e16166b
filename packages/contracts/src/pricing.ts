// Pricing of a chat exchange (DESIGN §3), shared by billing (which charges) and chat (which admits on what it charged).
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'

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

/** The price of an exchange of `model` with these token counts, under `prices`. */
export const priceExchange = (prices: ModelPrices, model: string, prompt: number, completion: number): number =>
  priceTokens(prompt, completion, ratiosFor(prices, model))
