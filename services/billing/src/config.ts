// Billing service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, Port, loadConfig } from '@chat-platform/platform'

export const BillingConfigSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...OutboxEnv,
  ...ServiceUrlsEnv,
  PORT: Port(3003)
})
export type BillingConfig = Static<typeof BillingConfigSchema>

export const loadBillingConfig = (env: Record<string, string | undefined> = process.env): BillingConfig => loadConfig(BillingConfigSchema, env)
