// Event contracts (DESIGN §4): streams, subjects and payload schemas shared by producers and consumers.
import { Type, type Static } from 'typebox'

export const Streams = {
  AUTH_EVENTS: { name: 'AUTH_EVENTS', subjects: ['auth.user.>'] },
  /** Token revocations (DESIGN §6.3): read from the start by every process that verifies tokens; kept as long as an access token lives. */
  AUTH_REVOCATIONS: { name: 'AUTH_REVOCATIONS', subjects: ['auth.token.>'] },
  CHAT_USAGE: { name: 'CHAT_USAGE', subjects: ['chat.usage.>'] }
} as const

export const Subjects = {
  userRegistered: 'auth.user.registered',
  tokenRevoked: 'auth.token.revoked',
  userDeleted: 'auth.user.deleted',
  usageRecorded: 'chat.usage.recorded'
} as const

const EventBase = {
  event_id: Type.String({ format: 'uuid' }),
  occurred_at: Type.String({ format: 'date-time' })
}

export const UserRegisteredSchema = Type.Object({
  ...EventBase,
  user_id: Type.Integer({ minimum: 1 }),
  via: Type.Union([Type.Literal('email'), Type.Literal('wechat')])
})
export type UserRegistered = Static<typeof UserRegisteredSchema>

/** An account was deleted: its personal data is gone from auth; chat deletes the user's sessions and messages. */
export const UserDeletedSchema = Type.Object({
  ...EventBase,
  user_id: Type.Integer({ minimum: 1 })
})
export type UserDeleted = Static<typeof UserDeletedSchema>

/**
 * Access tokens that stop working before their `exp`. Each field present revokes: `jti` one token, `sid` every
 * token of that session (refresh family), `user_id` + `not_before` (epoch seconds) every token of that user
 * issued (`iat`) before it. `exp` (epoch seconds): after it no token the record revokes can still be valid,
 * so a verifier may forget it.
 */
export const TokenRevokedSchema = Type.Object({
  ...EventBase,
  jti: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  sid: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  user_id: Type.Optional(Type.Integer({ minimum: 1 })),
  not_before: Type.Optional(Type.Integer({ minimum: 0 })),
  exp: Type.Integer({ minimum: 0 })
})
export type TokenRevoked = Static<typeof TokenRevokedSchema>

export const UsageSourceSchema = Type.Union([Type.Literal('provider'), Type.Literal('estimated')])
export type UsageSource = Static<typeof UsageSourceSchema>

export const UsagePurposeSchema = Type.Union([Type.Literal('exchange'), Type.Literal('title')])
export type UsagePurpose = Static<typeof UsagePurposeSchema>

export const UsageRecordedSchema = Type.Object({
  ...EventBase,
  user_id: Type.Integer({ minimum: 1 }),
  session_id: Type.Integer({ minimum: 1 }),
  /** The exchange's reply (a regenerated exchange: the new reply); null for a title (`purpose: "title"`). */
  message_id: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  model: Type.String({ minLength: 1, maxLength: 200 }),
  prompt_tokens: Type.Integer({ minimum: 0 }),
  completion_tokens: Type.Integer({ minimum: 0 }),
  usage_source: UsageSourceSchema,
  /**
   * Chat's price of this exchange when it recorded it (the shared pricing rule, chat's MODEL_PRICES). Billing
   * adds it to the account's `chat_applied` when it applies the event, so chat can tell which of its charges
   * billing has not applied yet (DESIGN §3). Absent in events from before it existed: counts as 0.
   */
  estimated_amount: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Present (true) when the reply came from chat's offline simulator (no OPENAI_API_KEY): billing's description says so. */
  simulated: Type.Optional(Type.Literal(true)),
  /**
   * What the tokens were spent on: `exchange` (absent in events from before it existed, and in chat's exchange
   * events: the default) or `title`, a session's automatic title (DESIGN §6.4), which billing's description says.
   */
  purpose: Type.Optional(UsagePurposeSchema)
})
export type UsageRecorded = Static<typeof UsageRecordedSchema>

/**
 * Stream and subject names with an optional namespace. Production uses none (the names above);
 * tests give each run its own namespace so that parallel test files never share a stream.
 */
export function namespaced (namespace: string) {
  const s = (subject: string) => namespace ? `${namespace}.${subject}` : subject
  const n = (stream: string) => namespace ? `${namespace.replaceAll(/[^A-Za-z0-9_-]/g, '_')}_${stream}` : stream
  return {
    subject: s,
    stream: n,
    streams: {
      AUTH_EVENTS: { name: n('AUTH_EVENTS'), subjects: [s('auth.user.>')] },
      AUTH_REVOCATIONS: { name: n('AUTH_REVOCATIONS'), subjects: [s('auth.token.>')] },
      CHAT_USAGE: { name: n('CHAT_USAGE'), subjects: [s('chat.usage.>')] }
    }
  }
}
