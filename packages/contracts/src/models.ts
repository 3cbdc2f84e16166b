// The chat models and their providers from config (CHAT_MODELS, CHAT_PROVIDERS; DESIGN §6.4): one source for a model's price, read by chat and billing.
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'
import { parseModelPrices, type ModelPrices } from './pricing.ts'
import { CreateSessionBodySchema, SendMessageBodySchema, SessionSchema } from './api.ts'

const Ratio = Type.Number({ minimum: 0, maximum: 1_000_000 })
const ModelId = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\s*][^\\s]*$' })

/** One configured model, as CHAT_MODELS lists it. `context_tokens` (the whole window: prompt and reply) may be left out. */
export const ChatModelConfigSchema = Type.Object({
  id: ModelId,
  name: Type.String({ minLength: 1, maxLength: 200 }),
  input_ratio: Ratio,
  output_ratio: Ratio,
  context_tokens: Type.Optional(Type.Integer({ minimum: 128, maximum: 100_000_000 })),
  default: Type.Optional(Type.Boolean())
}, { additionalProperties: false })
export type ChatModelConfig = Static<typeof ChatModelConfigSchema>

/** A model as GET /api/models answers it: `context_tokens` is the window chat budgets with (the model's, else the service's). */
export const ChatModelSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  input_ratio: Type.Number(),
  output_ratio: Type.Number(),
  context_tokens: Type.Integer(),
  default: Type.Boolean()
})
export type ChatModel = Static<typeof ChatModelSchema>

const ChatModelsSchema = Type.Array(ChatModelConfigSchema, { minItems: 1, maxItems: 200 })

/** One OpenAI-compatible upstream, as CHAT_PROVIDERS lists it; tried in the listed order for each of its models. */
export const ChatProviderSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._-]+$' }),
  base_url: Type.String({ pattern: '^https?://', maxLength: 2000 }),
  api_key: Type.String({ minLength: 1 }),
  models: Type.Array(ModelId, { minItems: 1 })
}, { additionalProperties: false })
export type ChatProvider = Static<typeof ChatProviderSchema>

const ChatProvidersSchema = Type.Array(ChatProviderSchema, { minItems: 1, maxItems: 50 })

function parseJson (json: string, schema: typeof ChatModelsSchema | typeof ChatProvidersSchema, example: string): unknown {
  let value: unknown
  try { value = JSON.parse(json) } catch { throw new Error('is not valid JSON') }
  if (!Value.Check(schema, value)) {
    const e = Value.Errors(schema, value)[0]
    throw new Error(`must look like ${example}: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`)
  }
  return value
}

/**
 * Parses CHAT_MODELS: a JSON array of models, ids unique, exactly one `default: true` (or a single model), ratios
 * exact to a millionth (the pricing rule's precision). Throws with a readable reason.
 */
export function parseChatModels (json: string): ChatModelConfig[] {
  const models = parseJson(json, ChatModelsSchema, '[{"id":"gpt-4o-mini","name":"GPT-4o mini","input_ratio":1,"output_ratio":4,"context_tokens":128000,"default":true}]') as ChatModelConfig[]
  const seen = new Set<string>()
  for (const m of models) {
    if (seen.has(m.id)) throw new Error(`model id "${m.id}" is listed twice`)
    seen.add(m.id)
  }
  const defaults = models.filter((m) => m.default === true)
  if (models.length > 1 && defaults.length !== 1) throw new Error(`exactly one model must have "default": true (found ${defaults.length})`)
  if (models.length === 1 && models[0].default === false) throw new Error(`the only model "${models[0].id}" cannot be "default": false`)
  // The same precision check the pricing rule applies (ratios exact to a millionth).
  parseModelPrices(JSON.stringify(modelPrices(models)))
  return models
}

/** The default model of a parsed CHAT_MODELS (the one marked, or the only one). */
export const defaultChatModel = (models: ChatModelConfig[]): ChatModelConfig =>
  models.find((m) => m.default === true) ?? models[0]

/**
 * The prices pricing.ts uses. There is no "*" entry: a model that is not configured (an event from before a model
 * was removed) is priced at the default ratios 1 and 1, never 0.
 */
export function modelPrices (models: ChatModelConfig[]): ModelPrices {
  return Object.fromEntries(models.map((m) => [m.id, { input: m.input_ratio, output: m.output_ratio }]))
}

/**
 * The one source of prices for chat and billing: CHAT_MODELS when set, else MODEL_PRICES as before. Setting both
 * (MODEL_PRICES non-empty) is refused, so two places can never disagree on a price. Throws `{ variable, message }`.
 */
export function pricesFromEnv (chatModels: string | undefined, modelPricesJson: string): { prices: ModelPrices, models?: ChatModelConfig[] } {
  let legacy: ModelPrices
  try { legacy = parseModelPrices(modelPricesJson) } catch (err) { throw new PricesConfigError('MODEL_PRICES', (err as Error).message) }
  if (chatModels === undefined || chatModels.trim() === '') return { prices: legacy }
  let models: ChatModelConfig[]
  try { models = parseChatModels(chatModels) } catch (err) { throw new PricesConfigError('CHAT_MODELS', (err as Error).message) }
  if (Object.keys(legacy).length > 0) throw new PricesConfigError('MODEL_PRICES', 'must be unset (or {}) when CHAT_MODELS is set: a model\'s price has one source')
  return { prices: modelPrices(models), models }
}

export class PricesConfigError extends Error {
  readonly variable: string
  constructor (variable: string, message: string) {
    super(message)
    this.variable = variable
  }
}

/**
 * Parses CHAT_PROVIDERS against the configured model ids: provider names unique, every provider's model configured,
 * every configured model served by at least one provider. Throws with a readable reason.
 */
export function parseChatProviders (json: string, modelIds: string[]): ChatProvider[] {
  const providers = parseJson(json, ChatProvidersSchema, '[{"name":"openai","base_url":"https://api.openai.com/v1","api_key":"sk-…","models":["gpt-4o-mini"]}]') as ChatProvider[]
  const names = new Set<string>()
  const known = new Set(modelIds)
  const served = new Set<string>()
  for (const p of providers) {
    if (names.has(p.name)) throw new Error(`provider name "${p.name}" is listed twice`)
    names.add(p.name)
    if (new Set(p.models).size !== p.models.length) throw new Error(`provider "${p.name}" lists a model twice`)
    for (const id of p.models) {
      if (!known.has(id)) throw new Error(`provider "${p.name}" serves "${id}", which is not in CHAT_MODELS`)
      served.add(id)
    }
  }
  const unserved = modelIds.filter((id) => !served.has(id))
  if (unserved.length > 0) throw new Error(`no provider serves ${unserved.map((id) => `"${id}"`).join(', ')}`)
  return providers
}

/** A session's own system prompt: at most this many characters ("" sends none; null: the service's). */
export const SYSTEM_PROMPT_MAX_CHARS = 8000
const SessionModel = Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()])
const SessionSystemPrompt = Type.Union([Type.String({ maxLength: SYSTEM_PROMPT_MAX_CHARS }), Type.Null()])

/** The session object since §6.4: the seed's fields plus its settings (null: the defaults). */
export const SessionWithSettingsSchema = Type.Object({
  ...SessionSchema.properties,
  /** A model id from GET /api/models; null: the default model. */
  model: Type.Union([Type.String(), Type.Null()]),
  /** null: the service's system prompt; "": none. */
  system_prompt: Type.Union([Type.String(), Type.Null()])
})
export type SessionWithSettings = Static<typeof SessionWithSettingsSchema>

/** POST /api/sessions: the seed's `{title?}` plus the settings (left out or null: the defaults). */
export const CreateSessionWithSettingsBodySchema = Type.Object({
  ...CreateSessionBodySchema.properties,
  model: Type.Optional(SessionModel),
  system_prompt: Type.Optional(SessionSystemPrompt)
})

/** PATCH /api/sessions/{session_id}: a field left out is unchanged; `model` or `system_prompt` null goes back to the default. */
export const UpdateSessionBodySchema = Type.Object({
  title: Type.Optional(Type.String({ maxLength: 1000 })),
  model: Type.Optional(SessionModel),
  system_prompt: Type.Optional(SessionSystemPrompt)
})
export type UpdateSessionBody = Static<typeof UpdateSessionBodySchema>

/** POST …/messages: the seed's `{content, role?}` plus `model?`, this exchange's model instead of the session's. */
export const SendMessageWithModelBodySchema = Type.Object({
  ...SendMessageBodySchema.properties,
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 200 }))
})
