// The usage report (DESIGN §6.4, §6.2): usage ledger rows summed per day (in USAGE_TIMEZONE) or per model.
import { Type, type Static } from 'typebox'

/** A day (`2026-12-05`, its midnight in USAGE_TIMEZONE) or an instant (`2026-12-05T16:00:00Z`). */
const Bound = Type.Union([Type.String({ format: 'date' }), Type.String({ format: 'date-time' })])

/** `[from, to)`; defaults: `to` now, `from` 30 days before `to`; at most 366 days. */
export const UsageReportQuerySchema = Type.Object({
  from: Type.Optional(Bound),
  to: Type.Optional(Bound),
  group_by: Type.Union([Type.Literal('day'), Type.Literal('model')], { default: 'day' })
})
export type UsageReportQuery = Static<typeof UsageReportQuerySchema>

export const UsageReportRowSchema = Type.Object({
  /** `YYYY-MM-DD` (group_by=day) or the model id. */
  key: Type.String(),
  exchanges: Type.Integer(),
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  /** Tokens charged (positive). */
  amount: Type.Integer()
})
export type UsageReportRow = Static<typeof UsageReportRowSchema>
