// Billing service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig, ConfigError } from '@chat-platform/platform'
import { pricesFromEnv, PricesConfigError } from '@chat-platform/contracts'
import type { ModelPrices } from './pricing.ts'
import { PaymentsEnv, loadPaymentsConfig, type PaymentsConfig } from './payments/config.ts'

export const BillingEnvSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...ServiceUrlsEnv,
  ...InternalEnv,
  ...PaymentsEnv,
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
  /** JSON: {"<model>": {"input": <ratio>, "output": <ratio>}, "*": {...}}; unknown models cost 1 and 1. Only without CHAT_MODELS. */
  MODEL_PRICES: Type.String({ default: '{}' }),
  /** Chat's models with their ratios (the same value as chat's): when set, the one source of prices; unknown models cost 1 and 1. */
  CHAT_MODELS: Type.Optional(Type.String()),
  /** How long JetStream waits for an ack before redelivering (the consumer's ack_wait). */
  BILLING_ACK_WAIT_MS: Type.Integer({ default: 30_000, minimum: 100 }),
  /** Most events applied in one Postgres transaction. */
  BILLING_BATCH_SIZE: Type.Integer({ default: 100, minimum: 1, maximum: 1000 }),
  /** Batches applied at the same time per consumer, each in its own transaction (and pool connection). */
  BILLING_BATCH_CONCURRENCY: Type.Integer({ default: 4, minimum: 1, maximum: 16 }),
  /** After a short batch, the next one waits at most this long for more events (fewer, larger transactions; 0: at once). */
  BILLING_BATCH_LINGER_MS: Type.Integer({ default: 20, minimum: 0, maximum: 1000 }),
  /** Redelivery delay after a transient failure (database away). */
  BILLING_RETRY_DELAY_MS: Type.Integer({ default: 2_000, minimum: 0 }),
  /** Idempotency keys are kept at least this long. */
  IDEMPOTENCY_TTL_HOURS: Type.Integer({ default: 48, minimum: 24 }),
  /** Open accounts only for user ids auth knows (GET {AUTH_URL}/internal/users/:id); off only in billing's own unit tests. */
  BILLING_CHECK_USERS: Type.Boolean({ default: true }),
  /** Failed redemptions (wrong, used or expired codes) a user may make per window before 429. */
  REDEEM_MAX_FAILURES: Type.Integer({ default: 10, minimum: 1 }),
  REDEEM_FAILURE_WINDOW_SECONDS: Type.Integer({ default: 600, minimum: 1 }),
  /** The IANA time zone whose days the usage report counts (group_by=day, and a `from`/`to` given as a date). */
  USAGE_TIMEZONE: Type.String({ default: 'Asia/Shanghai', pattern: '^[A-Za-z][A-Za-z0-9_+/-]*$' })
})

export type BillingConfig = Omit<Static<typeof BillingEnvSchema>, 'RECHARGE_POLICY' | 'MODEL_PRICES'> & {
  RECHARGE_POLICY: 'self' | 'admin'
  MODEL_PRICES: ModelPrices
  /** Paid top-ups: packages, the WeChat Pay merchant (or the simulator), the order poller (payments/config.ts). */
  payments: PaymentsConfig
}

export function loadBillingConfig (env: Record<string, string | undefined> = process.env): BillingConfig {
  const raw = loadConfig(BillingEnvSchema, env)
  let prices: ModelPrices
  try {
    prices = pricesFromEnv(raw.CHAT_MODELS, raw.MODEL_PRICES).prices
  } catch (err) {
    if (!(err instanceof PricesConfigError)) throw err
    throw new ConfigError([`${err.variable}: ${err.message} (got ${JSON.stringify(err.variable === 'CHAT_MODELS' ? raw.CHAT_MODELS : raw.MODEL_PRICES)})`])
  }
  try {
    // Postgres and ICU share the IANA database: a zone Intl knows is one `at time zone` knows.
    Intl.DateTimeFormat('en', { timeZone: raw.USAGE_TIMEZONE })
  } catch {
    throw new ConfigError([`USAGE_TIMEZONE: not an IANA time zone (got ${JSON.stringify(raw.USAGE_TIMEZONE)})`])
  }
  // Each of the two consumers may hold BILLING_BATCH_CONCURRENCY connections; two stay for the routes.
  if (2 * raw.BILLING_BATCH_CONCURRENCY + 2 > raw.DATABASE_POOL_MAX) {
    throw new ConfigError([`BILLING_BATCH_CONCURRENCY: ${raw.BILLING_BATCH_CONCURRENCY} needs DATABASE_POOL_MAX of at least ${2 * raw.BILLING_BATCH_CONCURRENCY + 2} (two consumers, two connections for requests; got ${raw.DATABASE_POOL_MAX})`])
  }
  let payments: PaymentsConfig
  try {
    payments = loadPaymentsConfig(raw)
  } catch (err) {
    throw new ConfigError([(err as Error).message])
  }
  return {
    ...raw,
    RECHARGE_POLICY: raw.RECHARGE_POLICY ?? (raw.NODE_ENV === 'production' ? 'admin' : 'self'),
    MODEL_PRICES: prices,
    payments
  }
}
