// Billing service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig, ConfigError } from '@chat-platform/platform'
import { parseModelPrices, type ModelPrices } from './pricing.ts'

export const BillingEnvSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...ServiceUrlsEnv,
  ...InternalEnv,
  PORT: Port(3003),
  SIGNUP_BONUS: Type.Integer({ default: 1000, minimum: 0, maximum: 1_000_000_000 }),
  /**
   * When the signup bonus is granted: `register` (an account opens with it, whatever opens it first) or
   * `verified_email` (only on auth.user.registered, which auth then publishes when the address is verified;
   * an account opened earlier by a balance read or a charge starts at 0). Set the same value on auth.
   */
  SIGNUP_BONUS_ON: Type.Union([Type.Literal('register'), Type.Literal('verified_email')], { default: 'register' }),
  /** self | admin; unset means admin when NODE_ENV=production, self otherwise. */
  RECHARGE_POLICY: Type.Optional(Type.Union([Type.Literal('self'), Type.Literal('admin')])),
  /** JSON: {"<model>": {"input": <ratio>, "output": <ratio>}, "*": {...}}; unknown models cost 1 and 1. */
  MODEL_PRICES: Type.String({ default: '{}' }),
  /** How long JetStream waits for an ack before redelivering (the consumer's ack_wait). */
  BILLING_ACK_WAIT_MS: Type.Integer({ default: 30_000, minimum: 100 }),
  /** Most events applied in one Postgres transaction. */
  BILLING_BATCH_SIZE: Type.Integer({ default: 100, minimum: 1, maximum: 1000 }),
  /** Batches applied at the same time per consumer, each in its own transaction (and pool connection). */
  BILLING_BATCH_CONCURRENCY: Type.Integer({ default: 4, minimum: 1, maximum: 16 }),
  /** After a short batch, the next one waits at most this long for more events (fewer, larger transactions; 0: at once). */
  BILLING_BATCH_LINGER_MS: Type.Integer({ default: 0, minimum: 0, maximum: 1000 }),
  /** Redelivery delay after a transient failure (database away). */
  BILLING_RETRY_DELAY_MS: Type.Integer({ default: 2_000, minimum: 0 }),
  /** Idempotency keys are kept at least this long. */
  IDEMPOTENCY_TTL_HOURS: Type.Integer({ default: 48, minimum: 24 }),
  /** Open accounts only for user ids auth knows (GET {AUTH_URL}/internal/users/:id); off only in billing's own unit tests. */
  BILLING_CHECK_USERS: Type.Boolean({ default: true })
})

export type BillingConfig = Omit<Static<typeof BillingEnvSchema>, 'RECHARGE_POLICY' | 'MODEL_PRICES'> & {
  RECHARGE_POLICY: 'self' | 'admin'
  MODEL_PRICES: ModelPrices
}

export function loadBillingConfig (env: Record<string, string | undefined> = process.env): BillingConfig {
  const raw = loadConfig(BillingEnvSchema, env)
  let prices: ModelPrices
  try {
    prices = parseModelPrices(raw.MODEL_PRICES)
  } catch (err) {
    throw new ConfigError([`MODEL_PRICES: ${(err as Error).message} (got ${JSON.stringify(raw.MODEL_PRICES)})`])
  }
  // Each of the two consumers may hold BILLING_BATCH_CONCURRENCY connections; two stay for the routes.
  if (2 * raw.BILLING_BATCH_CONCURRENCY + 2 > raw.DATABASE_POOL_MAX) {
    throw new ConfigError([`BILLING_BATCH_CONCURRENCY: ${raw.BILLING_BATCH_CONCURRENCY} needs DATABASE_POOL_MAX of at least ${2 * raw.BILLING_BATCH_CONCURRENCY + 2} (two consumers, two connections for requests; got ${raw.DATABASE_POOL_MAX})`])
  }
  return {
    ...raw,
    RECHARGE_POLICY: raw.RECHARGE_POLICY ?? (raw.NODE_ENV === 'production' ? 'admin' : 'self'),
    MODEL_PRICES: prices
  }
}
