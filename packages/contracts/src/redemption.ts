// Redemption codes (DESIGN §6.2): the admin's batch request and answer, the user's redeem request and answer.
import { Type, type Static } from 'typebox'
import { Id, Timestamp } from './api.ts'

export const CreateRedemptionCodesBodySchema = Type.Object({
  /** Tokens each code credits. */
  tokens: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  count: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** After this instant the batch's unused codes are refused (409 redemption_expired); must lie in the future. */
  expires_at: Type.Optional(Timestamp),
  note: Type.Optional(Type.String({ maxLength: 200 }))
})
export type CreateRedemptionCodesBody = Static<typeof CreateRedemptionCodesBodySchema>

/** The codes in clear, shown this once: billing keeps only their sha-256. */
export const CreateRedemptionCodesResponseSchema = Type.Object({
  batch_id: Id,
  codes: Type.Array(Type.String())
})

/** A code as printed (`XXXXX-XXXXX-XXXXX-XXXXX`); case, dashes and spaces do not matter. */
export const RedeemBodySchema = Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }) })
/** `balance` after the credit, `tokens` the credit itself. */
export const RedeemResponseSchema = Type.Object({ message: Type.String(), balance: Type.Integer(), tokens: Type.Integer() })
