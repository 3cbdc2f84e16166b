// Route schemas of the billing service that the shared contracts do not hold.
import { Type } from 'typebox'
import { IdempotencyKey } from '@chat-platform/contracts'

export { problems } from '@chat-platform/platform'

export const RechargeHeadersSchema = Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKey) })
