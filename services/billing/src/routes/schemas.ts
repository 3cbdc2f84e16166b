// Route schemas of the billing service that the shared contracts do not hold.
import { Type } from 'typebox'
import { Id, ProblemSchema, Timestamp } from '@chat-platform/contracts'

/** Problem responses for the statuses a route can give (docs; the error handler serializes them). */
export const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ProblemSchema]))

export const RechargeHeadersSchema = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' }))
})

export const UserIdParamsSchema = Type.Object({ user_id: Id })
export const UsageEventsQuerySchema = Type.Object({ since: Timestamp, until: Type.Optional(Timestamp) })
export const UsageEventsResponseSchema = Type.Object({ event_ids: Type.Array(Type.String()) })
