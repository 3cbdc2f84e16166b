// Chat service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig } from '@chat-platform/platform'

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
  /** Unset: the built-in offline simulator answers (see src/llm/simulator.ts). */
  OPENAI_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  OPENAI_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  CHAT_MODEL: Type.String({ default: 'gpt-4o-mini', minLength: 1, maxLength: 200 }),
  /** JSON calls: the whole answer; streaming: the first chunk and every gap between chunks. */
  CHAT_LLM_TIMEOUT_MS: Type.Integer({ default: 60_000, minimum: 1 }),
  CHAT_LLM_MAX_RETRIES: Type.Integer({ default: 2, minimum: 0, maximum: 10 }),
  /** Sent as max_tokens when set. */
  CHAT_MAX_OUTPUT_TOKENS: Type.Optional(Type.Integer({ minimum: 1 })),
  CHAT_SYSTEM_PROMPT: Type.String({ default: DEFAULT_SYSTEM_PROMPT }),
  /** Prompt budget (system prompt + history + the new message), counted with the local tokenizer. */
  CHAT_CONTEXT_TOKENS: Type.Integer({ default: 8000, minimum: 64 }),
  /** At most this many recent messages are considered for the prompt. */
  CHAT_HISTORY_MAX_MESSAGES: Type.Integer({ default: 100, minimum: 0, maximum: 1000 }),
  CHAT_MAX_INFLIGHT: Type.Integer({ default: 2, minimum: 1 }),
  /** An in-flight slot expires after this long unless renewed, so a crashed replica cannot lock a user out. */
  CHAT_INFLIGHT_TTL_MS: Type.Integer({ default: 120_000, minimum: 1000 }),
  CHAT_IDEMPOTENCY_TTL_HOURS: Type.Integer({ default: 24, minimum: 24 }),
  CHAT_SSE_HEARTBEAT_MS: Type.Integer({ default: 15_000, minimum: 100 }),
  /** The offline simulator's delay between streamed chunks (only when OPENAI_API_KEY is unset). */
  CHAT_SIMULATOR_CHUNK_DELAY_MS: Type.Integer({ default: 20, minimum: 0 })
})
export type ChatConfig = Static<typeof ChatConfigSchema>

export const loadChatConfig = (env: Record<string, string | undefined> = process.env): ChatConfig => loadConfig(ChatConfigSchema, env)
