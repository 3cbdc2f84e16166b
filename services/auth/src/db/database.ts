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

export interface Database {
  outbox: OutboxTable
  users: UsersTable
  wechat_identities: WechatIdentitiesTable
}
