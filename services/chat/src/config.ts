// Chat service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { parseChatProviders, pricesFromEnv, PricesConfigError, type ChatModel, type ChatProvider, type ModelPrices } from '@chat-platform/contracts'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig, ConfigError } from '@chat-platform/platform'

export const DEFAULT_SYSTEM_PROMPT = 'You are a helpful assistant. Answer in the language the user writes in.'

export const ChatConfigSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...OutboxEnv,
  ...ServiceUrlsEnv,
  ...InternalEnv,
  PORT: Port(3002),
  /**
   * JSON [{id, name, input_ratio, output_ratio, context_tokens?, default}]: the models users may pick, priced by these
   * ratios (billing reads the same variable). Unset: one model, CHAT_MODEL, priced by MODEL_PRICES.
   */
  CHAT_MODELS: Type.Optional(Type.String()),
  /**
   * JSON [{name, base_url, api_key, models:[ids]}]: the OpenAI-compatible upstreams, tried in this order for each
   * model. Unset: OPENAI_BASE_URL/OPENAI_API_KEY (or the simulator) serve every model.
   */
  CHAT_PROVIDERS: Type.Optional(Type.String()),
  /** A 429 whose Retry-After is at most this long is waited out on the same provider (once); a longer one moves on. */
  CHAT_LLM_RETRY_AFTER_MAX_MS: Type.Integer({ default: 2000, minimum: 0, maximum: 60_000 }),
  /** A longer Retry-After opens the provider's circuit for its length, at most this long (a bogus 1e12 must not keep it out until restart). */
  CHAT_LLM_RETRY_AFTER_CAP_MS: Type.Integer({ default: 300_000, minimum: 1000 }),
  /** A provider's circuit opens after this many consecutive failures before the first byte. */
  CHAT_BREAKER_FAILURES: Type.Integer({ default: 5, minimum: 1, maximum: 1000 }),
  /** An open circuit lets one probe through after this long (half-open). */
  CHAT_BREAKER_COOLDOWN_MS: Type.Integer({ default: 30_000, minimum: 100 }),
  /** Unset: the built-in offline simulator answers (see packages/llm-simulator). */
  OPENAI_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  OPENAI_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  CHAT_MODEL: Type.String({ default: 'gpt-4o-mini', minLength: 1, maxLength: 200 }),
  /** JSON calls: the whole answer; streaming: the first chunk and every gap between chunks. */
  CHAT_LLM_TIMEOUT_MS: Type.Integer({ default: 60_000, minimum: 1 }),
  CHAT_LLM_MAX_RETRIES: Type.Integer({ default: 2, minimum: 0, maximum: 10 }),
  /** Sent as max_tokens: with CHAT_CONTEXT_TOKENS it bounds what one exchange can cost. */
  CHAT_MAX_OUTPUT_TOKENS: Type.Integer({ default: 4096, minimum: 1 }),
  /** The same JSON as billing's (it must match): chat prices what it records, so admission can count it before billing has. */
  MODEL_PRICES: Type.String({ default: '{}' }),
  CHAT_SYSTEM_PROMPT: Type.String({ default: DEFAULT_SYSTEM_PROMPT }),
  /** Prompt budget (system prompt + history + the new message), counted with the local tokenizer. */
  CHAT_CONTEXT_TOKENS: Type.Integer({ default: 8000, minimum: 64 }),
  /** At most this many recent messages are considered for the prompt. */
  CHAT_HISTORY_MAX_MESSAGES: Type.Integer({ default: 100, minimum: 0, maximum: 1000 }),
  CHAT_MAX_INFLIGHT: Type.Integer({ default: 2, minimum: 1 }),
  /** An in-flight slot expires after this long unless renewed, so a crashed replica cannot lock a user out. */
  CHAT_INFLIGHT_TTL_MS: Type.Integer({ default: 120_000, minimum: 1000 }),
  CHAT_IDEMPOTENCY_TTL_HOURS: Type.Integer({ default: 24, minimum: 24 }),
  /** After output, a reply that could not be recorded (Postgres away) is retried in-process this long. */
  CHAT_RECORD_RETRY_MS: Type.Integer({ default: 300_000, minimum: 0 }),
  /** How often each replica looks for exchanges left pending by a process that died. */
  CHAT_PENDING_SWEEP_MS: Type.Integer({ default: 30_000, minimum: 100 }),
  /** A pending exchange whose lease expired this long ago is settled by the sweeper (charged for its prompt, estimated). */
  CHAT_PENDING_STALE_MS: Type.Integer({ default: 600_000, minimum: 0 }),
  CHAT_SSE_HEARTBEAT_MS: Type.Integer({ default: 15_000, minimum: 100 }),
  /** After an exchange of a session still titled 新会话, a short title from the model (in the background, charged as usage). */
  CHAT_AUTO_TITLE: Type.Boolean({ default: true }),
  /** The model of automatic titles (one of CHAT_MODELS, or CHAT_MODEL); unset: the default model. */
  CHAT_TITLE_MODEL: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  /** The offline simulator's delay between streamed chunks (only when OPENAI_API_KEY is unset). */
  CHAT_SIMULATOR_CHUNK_DELAY_MS: Type.Integer({ default: 20, minimum: 0 })
})
/**
 * The environment as the service uses it: MODEL_PRICES holds the prices of CHAT_MODELS when set (the one source),
 * CHAT_MODELS the resolved models (context_tokens filled in), CHAT_PROVIDERS the parsed providers (undefined: the
 * OPENAI_* variables or the simulator serve every model), and CHAT_MODEL the default model's id.
 */
export type ChatConfig = Omit<Static<typeof ChatConfigSchema>, 'MODEL_PRICES' | 'CHAT_MODELS' | 'CHAT_PROVIDERS'> & {
  MODEL_PRICES: ModelPrices
  CHAT_MODELS: ChatModel[]
  CHAT_PROVIDERS?: ChatProvider[]
}

export function loadChatConfig (env: Record<string, string | undefined> = process.env): ChatConfig {
  const raw = loadConfig(ChatConfigSchema, env)
  let prices: ReturnType<typeof pricesFromEnv>
  try {
    prices = pricesFromEnv(raw.CHAT_MODELS, raw.MODEL_PRICES)
  } catch (err) {
    if (!(err instanceof PricesConfigError)) throw err
    throw new ConfigError([`${err.variable}: ${err.message} (got ${JSON.stringify(err.variable === 'CHAT_MODELS' ? raw.CHAT_MODELS : raw.MODEL_PRICES)})`])
  }
  // Without CHAT_MODELS the window is the prompt budget plus the reply, so the budget stays CHAT_CONTEXT_TOKENS.
  const fallbackWindow = raw.CHAT_CONTEXT_TOKENS + raw.CHAT_MAX_OUTPUT_TOKENS
  const models: ChatModel[] = prices.models
    ? prices.models.map((m) => ({ id: m.id, name: m.name, input_ratio: m.input_ratio, output_ratio: m.output_ratio, context_tokens: m.context_tokens ?? fallbackWindow, default: m.default === true || prices.models!.length === 1 }))
    : [(() => {
        const r = prices.prices[raw.CHAT_MODEL] ?? prices.prices['*'] ?? { input: 1, output: 1 }
        return { id: raw.CHAT_MODEL, name: raw.CHAT_MODEL, input_ratio: r.input, output_ratio: r.output, context_tokens: fallbackWindow, default: true }
      })()]
  const tooSmall = models.filter((m) => m.context_tokens - raw.CHAT_MAX_OUTPUT_TOKENS < 64)
  if (raw.CHAT_TITLE_MODEL !== undefined && !models.some((m) => m.id === raw.CHAT_TITLE_MODEL)) throw new ConfigError([`CHAT_TITLE_MODEL: "${raw.CHAT_TITLE_MODEL}" is not a configured model (${models.map((m) => m.id).join(', ')})`])
  if (tooSmall.length > 0) throw new ConfigError([`CHAT_MODELS: context_tokens of ${tooSmall.map((m) => `"${m.id}"`).join(', ')} must exceed CHAT_MAX_OUTPUT_TOKENS (${raw.CHAT_MAX_OUTPUT_TOKENS}) by at least 64`])
  let providers: ChatProvider[] | undefined
  if (raw.CHAT_PROVIDERS !== undefined && raw.CHAT_PROVIDERS.trim() !== '') {
    if (!prices.models) throw new ConfigError(['CHAT_PROVIDERS: needs CHAT_MODELS (the models the providers serve, with their prices)'])
    try {
      providers = parseChatProviders(raw.CHAT_PROVIDERS, models.map((m) => m.id))
    } catch (err) {
      throw new ConfigError([`CHAT_PROVIDERS: ${(err as Error).message}`])
    }
  }
  const defaultModel = models.find((m) => m.default)!
  return { ...raw, MODEL_PRICES: prices.prices, CHAT_MODELS: models, CHAT_PROVIDERS: providers, CHAT_MODEL: defaultModel.id }
}
