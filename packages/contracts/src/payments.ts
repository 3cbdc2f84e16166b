// Paid top-ups (DESIGN §6.2): packages, orders and what the payer needs to pay them (WeChat Pay JSAPI or Native).
import { Type, type Static } from 'typebox'
import { Id, PaginationQuerySchema, Timestamp } from './api.ts'

export const RechargePackageViewSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  price_fen: Type.Integer(),
  tokens: Type.Integer()
})
export type RechargePackageView = Static<typeof RechargePackageViewSchema>

export const OrderChannelSchema = Type.Union([Type.Literal('jsapi'), Type.Literal('native')])
export const OrderStatusSchema = Type.Union([Type.Literal('pending'), Type.Literal('paid'), Type.Literal('closed')])

export const CreateOrderBodySchema = Type.Object({
  package_id: Type.String({ minLength: 1, maxLength: 32 }),
  channel: OrderChannelSchema
})
export type CreateOrderBody = Static<typeof CreateOrderBodySchema>

/** `order_no` is WeChat Pay's out_trade_no (letters and digits, 6–32). */
export const OrderNoSchema = Type.String({ pattern: '^[A-Za-z0-9]{6,32}$' })
export const OrderParamsSchema = Type.Object({ order_no: OrderNoSchema })

/**
 * An order as its user sees it. `created_at`/`paid_at` are UTC (`Z`) like every time of the API; `expires_at` is the
 * `time_expire` sent to WeChat Pay, RFC 3339 in China Standard Time (`2026-12-04T18:30:00+08:00`). `id` is the
 * cursor of `?before_id=`.
 */
export const OrderSchema = Type.Object({
  id: Id,
  order_no: Type.String(),
  package_id: Type.String(),
  channel: OrderChannelSchema,
  amount_fen: Type.Integer(),
  tokens: Type.Integer(),
  status: OrderStatusSchema,
  created_at: Timestamp,
  expires_at: Type.String(),
  paid_at: Type.Optional(Timestamp)
})
export type OrderView = Static<typeof OrderSchema>

/** `simulated: true`: the development payment simulator placed the order (nothing can really be paid). */
export const JsapiPaySchema = Type.Object({
  appId: Type.String(),
  timeStamp: Type.String(),
  nonceStr: Type.String(),
  package: Type.String(),
  signType: Type.Literal('RSA'),
  paySign: Type.String(),
  simulated: Type.Optional(Type.Literal(true))
})
export const NativePaySchema = Type.Object({
  code_url: Type.String(),
  simulated: Type.Optional(Type.Literal(true))
})
export const CreatedOrderSchema = Type.Object({
  ...OrderSchema.properties,
  pay: Type.Union([JsapiPaySchema, NativePaySchema])
})
export type CreatedOrder = Static<typeof CreatedOrderSchema>

/** An order as an admin sees it: its user, WeChat Pay's transaction id and whether it waits for an operator. */
export const AdminOrderSchema = Type.Object({
  ...OrderSchema.properties,
  user_id: Id,
  transaction_id: Type.Union([Type.String(), Type.Null()]),
  simulated: Type.Boolean(),
  flagged: Type.Boolean(),
  flag_reason: Type.Union([Type.String(), Type.Null()]),
  closed_at: Type.Optional(Timestamp)
})
export type AdminOrderView = Static<typeof AdminOrderSchema>

/** `status=flagged`: orders an operator must look at (a callback that did not match, a payment after the close). */
export const AdminOrdersQuerySchema = Type.Object({
  ...PaginationQuerySchema.properties,
  status: Type.Optional(Type.Union([OrderStatusSchema, Type.Literal('flagged')]))
})

/** The answer of WeChat Pay's callback route when it must try again (WeChat Pay's own error format). */
export const WechatPayNotifyErrorSchema = Type.Object({ code: Type.String(), message: Type.String() })
