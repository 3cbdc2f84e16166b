// Table interfaces of the `auth` schema.
import type { ColumnType, Insertable, Selectable, Updateable } from 'kysely'
import type { OutboxTable } from '@chat-platform/platform'

export const SCHEMA = 'auth'

type CreatedAt = ColumnType<Date, never, never>
type UpdatedAt = ColumnType<Date, never, Date>

export type UserRole = 'user' | 'admin'

export interface UsersTable {
  id: ColumnType<number, never, never>
  /** Lower-cased and trimmed; null for users who only ever signed in with WeChat. */
  email: string | null
  /** argon2id PHC string; null for WeChat-only users. */
  password_hash: string | null
  nickname: string
  avatar_url: string | null
  /** 'admin' only through `pnpm ops admin:grant`; nothing a user sends can set it. */
  role: ColumnType<UserRole, UserRole | undefined, UserRole>
  /** When the owner proved the address with a code (verification or password reset); null until then. */
  email_verified_at: ColumnType<Date | null, Date | null | undefined, Date | null>
  created_at: CreatedAt
  updated_at: UpdatedAt
}
export type User = Selectable<UsersTable>
export type NewUser = Insertable<UsersTable>
export type UserUpdate = Updateable<UsersTable>

export interface WechatIdentitiesTable {
  id: ColumnType<number, never, never>
  appid: string
  openid: string
  unionid: string | null
  user_id: number
  created_at: CreatedAt
}
export type WechatIdentity = Selectable<WechatIdentitiesTable>
export type NewWechatIdentity = Insertable<WechatIdentitiesTable>

/** A session: the family of refresh tokens one login started; its id is the `sid` claim of its access tokens. */
export interface RefreshFamiliesTable {
  id: string
  user_id: number
  created_at: CreatedAt
  revoked_at: Date | null
  /** logout | logout_all | reuse | password_change | password_reset | account_deleted */
  revoked_reason: string | null
}
export type RefreshFamily = Selectable<RefreshFamiliesTable>

export interface RefreshTokensTable {
  /** sha-256 of the token: the token itself is never stored. */
  token_hash: Buffer
  family_id: string
  created_at: CreatedAt
  expires_at: Date
  /** Set when the token was exchanged for the next one; using it again is reuse (the family is revoked). */
  rotated_at: Date | null
}

export type EmailCodePurpose = 'password_reset' | 'email_verification'

export interface EmailCodesTable {
  user_id: number
  purpose: EmailCodePurpose
  /** sha-256 of user id, purpose and the 6 digits: the code itself is never stored. */
  code_hash: Buffer
  expires_at: Date
  attempts: ColumnType<number, number | undefined, number>
  created_at: CreatedAt
}

export interface EmailCodeSendsTable {
  id: ColumnType<number, never, never>
  email: string
  sent_at: ColumnType<Date, never, never>
}

export interface Database {
  outbox: OutboxTable
  users: UsersTable
  wechat_identities: WechatIdentitiesTable
  refresh_families: RefreshFamiliesTable
  refresh_tokens: RefreshTokensTable
  email_codes: EmailCodesTable
  email_code_sends: EmailCodeSendsTable
}
