// Chat service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { parseModelPrices, type ModelPrices } from '@chat-platform/contracts'
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
  /** The offline simulator's delay between streamed chunks (only when OPENAI_API_KEY is unset). */
  CHAT_SIMULATOR_CHUNK_DELAY_MS: Type.Integer({ default: 20, minimum: 0 })
})
export type ChatConfig = Omit<Static<typeof ChatConfigSchema>, 'MODEL_PRICES'> & { MODEL_PRICES: ModelPrices }

export function loadChatConfig (env: Record<string, string | undefined> = process.env): ChatConfig {
  const raw = loadConfig(ChatConfigSchema, env)
  try {
    return { ...raw, MODEL_PRICES: parseModelPrices(raw.MODEL_PRICES) }
  } catch (err) {
    throw new ConfigError([`MODEL_PRICES: ${(err as Error).message} (got ${JSON.stringify(raw.MODEL_PRICES)})`])
  }
}
