// Admin routes (DESIGN §6.2): adjustments, the user search (auth), a user's ledger rows (billing).
import { Type, type Static } from 'typebox'
import { Id, Timestamp, TransactionSchema } from './api.ts'

/** A signed correction of a balance; the reason is stored on the ledger row and shown to the user in its description. */
export const AdjustmentBodySchema = Type.Object({
  user_id: Id,
  amount: Type.Integer({ minimum: -1_000_000_000, maximum: 1_000_000_000, not: { const: 0 } }),
  reason: Type.String({ minLength: 1, maxLength: 200 })
})
export type AdjustmentBody = Static<typeof AdjustmentBodySchema>

/** A ledger row as an admin sees it: the user's view plus its kind, source and provenance. */
export const AdminTransactionSchema = Type.Object({
  ...TransactionSchema.properties,
  kind: Type.String(),
  source_id: Type.String(),
  model: Type.Union([Type.String(), Type.Null()]),
  prompt_tokens: Type.Union([Type.Integer(), Type.Null()]),
  completion_tokens: Type.Union([Type.Integer(), Type.Null()]),
  usage_source: Type.Union([Type.String(), Type.Null()]),
  /** Adjustments: the admin who made it and why. */
  admin_id: Type.Union([Id, Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()])
})
export type AdminTransaction = Static<typeof AdminTransactionSchema>

export const AdminUserParamsSchema = Type.Object({ id: Id })

/** `query`: a substring of the email or nickname, or a user id; absent or empty lists the newest users. */
export const AdminUsersQuerySchema = Type.Object({
  query: Type.Optional(Type.String({ maxLength: 100 })),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
  before_id: Type.Optional(Id)
})
export const AdminUserSchema = Type.Object({
  id: Id,
  email: Type.Union([Type.String(), Type.Null()]),
  nickname: Type.String(),
  role: Type.String(),
  created_at: Timestamp
})
export type AdminUser = Static<typeof AdminUserSchema>
