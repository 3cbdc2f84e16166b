// HTTP API schemas of DESIGN §2, shared by the services (validation, serialization) and the gateway (/docs).
import { Type, type Static } from 'typebox'

/** ISO 8601 UTC timestamp ending in Z. */
export const Timestamp = Type.String({ format: 'date-time' })
// Ids are Postgres bigints read as JS numbers: anything past 2^53 − 1 (or Infinity from `1e400`) is a 400, not a 500 from Postgres.
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

export const Email = Type.String({ format: 'email', maxLength: 254 })
export const Password = Type.String({ minLength: 8, maxLength: 1024 })
export const Nickname = Type.String({ minLength: 1, maxLength: 32 })
export const AvatarUrl = Type.String({ maxLength: 512, pattern: '^https?://[^\\s]+$' })

export const PaginationQuerySchema = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  before_id: Type.Optional(Id)
})
export type PaginationQuery = Static<typeof PaginationQuerySchema>

export const MessageResponseSchema = Type.Object({ message: Type.String() })

/** The `Idempotency-Key` header (billing's recharge, chat's send): printable ASCII without spaces. */
export const IdempotencyKey = Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' })

// auth
/** Both logins and POST /api/auth/refresh (DESIGN §6.3): `expires_in` is the access token's lifetime in seconds. */
export const TokenResponseSchema = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ minimum: 1 }),
  refresh_token: Type.String()
})
/** A refresh token as auth hands it out: 32 random bytes, base64url (43 characters). */
export const RefreshTokenSchema = Type.String({ minLength: 1, maxLength: 200 })
export const RefreshBodySchema = Type.Object({ refresh_token: RefreshTokenSchema })
export const LogoutBodySchema = Type.Object({ refresh_token: Type.Optional(RefreshTokenSchema) })
const Code = Type.String({ pattern: '^[0-9]{6}$' })
export const PasswordResetBodySchema = Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }) })
export const PasswordResetConfirmBodySchema = Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), code: Code, new_password: Password })
export const EmailVerifyBodySchema = Type.Object({ code: Code })
/** DELETE /api/user/account: the password (an account without one, WeChat-only, needs a login within 10 minutes instead). */
export const DeleteAccountBodySchema = Type.Object({ password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) })
export const ChangePasswordBodySchema = Type.Object({ old_password: Type.String({ minLength: 1, maxLength: 1024 }), new_password: Password })
/** PUT /api/user/password: the documented `{message}`, plus a fresh session for the caller (every other one ended). */
export const ChangePasswordResponseSchema = Type.Object({
  message: Type.String(),
  access_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ minimum: 1 }),
  refresh_token: Type.String()
})
/** `appid`: which configured WeChat app the code comes from (WECHAT_APPS); omitted: WECHAT_APPID, the mini-program. */
export const WechatLoginBodySchema = Type.Object({ code: Type.String({ minLength: 1, maxLength: 256 }), appid: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) })
export const EmailLoginBodySchema = Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), password: Type.String({ minLength: 1, maxLength: 1024 }) })
/** Auth trims the nickname and email (and lower-cases the email) before validation: the limits apply to the trimmed text. */
export const RegisterBodySchema = Type.Object({ email: Email, password: Password, nickname: Nickname })
export const RegisterResponseSchema = Type.Object({ message: Type.String(), user_id: Id })
export const VerifyResponseSchema = Type.Object({
  user: Type.Object({ id: Id, email: Type.Union([Type.String(), Type.Null()]), nickname: Type.String(), tokens: Type.Integer() })
})
export const ProfileSchema = Type.Object({
  id: Id,
  email: Type.Union([Type.String(), Type.Null()]),
  nickname: Type.String(),
  avatar_url: Type.Union([Type.String(), Type.Null()]),
  tokens: Type.Integer(),
  created_at: Timestamp,
  updated_at: Timestamp
})
export type Profile = Static<typeof ProfileSchema>
export const ProfileUpdateBodySchema = Type.Object({
  nickname: Type.Optional(Nickname),
  avatar_url: Type.Optional(AvatarUrl)
})

// billing
export const BalanceResponseSchema = Type.Object({ balance: Type.Integer() })
export const RechargeBodySchema = Type.Object({
  amount: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  user_id: Type.Optional(Id)
})
export const RechargeResponseSchema = Type.Object({ message: Type.String(), balance: Type.Integer() })
export const TransactionSchema = Type.Object({
  id: Id,
  user_id: Id,
  change_amount: Type.Integer(),
  balance_after: Type.Integer(),
  description: Type.String(),
  created_at: Timestamp
})
export type Transaction = Static<typeof TransactionSchema>

// chat
export const SessionIdParamsSchema = Type.Object({ session_id: Id })
export const CreateSessionBodySchema = Type.Object({ title: Type.Optional(Type.String({ maxLength: 1000 })) })
export const SessionSchema = Type.Object({ id: Id, user_id: Id, title: Type.String(), created_at: Timestamp })
export type Session = Static<typeof SessionSchema>
export const SendMessageBodySchema = Type.Object({
  content: Type.String({ minLength: 1, maxLength: 16_000 }),
  role: Type.Optional(Type.Literal('user'))
})
export const ChatMessageSchema = Type.Object({
  id: Id,
  session_id: Id,
  content: Type.String(),
  role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
  tokens: Type.Integer(),
  created_at: Timestamp,
  /** An assistant reply a regenerate replaced: still listed, no longer part of the conversation the model sees (DESIGN §6.4). */
  superseded: Type.Optional(Type.Boolean())
})
export type ChatMessage = Static<typeof ChatMessageSchema>

// internal (never routed by the gateway)
/** Routes under this prefix answer only calls carrying INTERNAL_TOKEN (when it is set) in INTERNAL_TOKEN_HEADER. */
export const INTERNAL_PATH_PREFIX = '/internal/'
export const INTERNAL_TOKEN_HEADER = 'x-internal-token'
