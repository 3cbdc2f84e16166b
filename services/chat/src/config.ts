// Chat service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, Port, loadConfig } from '@chat-platform/platform'

export const ChatConfigSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...OutboxEnv,
  ...ServiceUrlsEnv,
  PORT: Port(3002)
})
export type ChatConfig = Static<typeof ChatConfigSchema>

export const loadChatConfig = (env: Record<string, string | undefined> = process.env): ChatConfig => loadConfig(ChatConfigSchema, env)
