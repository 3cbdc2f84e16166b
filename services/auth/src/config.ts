// Auth service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, Port, loadConfig } from '@chat-platform/platform'

export const AuthConfigSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...OutboxEnv,
  ...ServiceUrlsEnv,
  PORT: Port(3001)
})
export type AuthConfig = Static<typeof AuthConfigSchema>

export const loadAuthConfig = (env: Record<string, string | undefined> = process.env): AuthConfig => loadConfig(AuthConfigSchema, env)
