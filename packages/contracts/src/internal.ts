// Internal endpoints (`/internal/*`, never routed by the gateway; INTERNAL_TOKEN required when set): for each, the
// service that serves it, its method and route, its TypeBox schemas and the problem statuses it answers. The
// serving routes declare exactly these schemas (platform `internalRouteSchema`); every caller goes through the
// typed clients of packages/platform (`authInternal`, `billingInternal`, `chatInternal`).
import { Type, type Static, type TSchema } from 'typebox'
import { Id, Timestamp } from './api.ts'
import { BalanceCopySchema } from './balance-cache.ts'

export interface InternalEndpoint {
  /** The service that serves it (the caller's base URL is that service's). */
  readonly service: 'auth' | 'billing' | 'chat'
  readonly method: 'GET' | 'POST'
  /** The route as Fastify declares it (`:name` segments are `params`). */
  readonly url: string
  readonly params?: TSchema
  readonly querystring?: TSchema
  readonly body?: TSchema
  /** The 200 answer. */
  readonly response: TSchema
  /** The other statuses it answers, each with a problem body. */
  readonly problems: readonly number[]
  /** 404 is an answer ("no such thing"), not a failure: the clients return null for it. */
  readonly notFoundIsNull?: true
}

/** What a call of `E` sends: `params` for its `:name` segments, `query`, `body` (each only when `E` has the schema). */
export type InternalInput<E extends InternalEndpoint> =
  (E extends { params: infer P extends TSchema } ? { params: Static<P> } : { params?: never }) &
  (E extends { querystring: infer Q extends TSchema } ? { query: Static<Q> } : { query?: never }) &
  (E extends { body: infer B extends TSchema } ? { body: Static<B> } : { body?: never })

/** What a call of `E` answers: the 200 body, or null for a 404 when the endpoint says 404 is an answer. */
export type InternalOutput<E extends InternalEndpoint> = Static<E['response']> | (E extends { notFoundIsNull: true } ? null : never)

/** The path (and query string) of one call: `:name` segments filled from `params` (URI-encoded), undefined query values left out. */
export function internalPath<E extends InternalEndpoint> (endpoint: E, input: InternalInput<E>): string {
  const { params, query } = input as { params?: Record<string, unknown>, query?: Record<string, unknown> }
  const path = endpoint.url.replace(/:(\w+)/g, (_, name: string) => {
    const value = params?.[name]
    if (value === undefined || value === null) throw new Error(`${endpoint.url}: no value for :${name}`)
    return encodeURIComponent(String(value))
  })
  const qs = new URLSearchParams()
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) qs.append(k, String(v))
  const s = qs.toString()
  return s === '' ? path : `${path}?${s}`
}

const UserIdParamsSchema = Type.Object({ user_id: Id })
/** A time window: `since` inclusive, `until` (optional) exclusive. */
const WindowQuerySchema = Type.Object({ since: Timestamp, until: Type.Optional(Timestamp) })

// auth

/** Does this user exist? Billing asks before it opens an account (404: no such user). */
export const InternalUserSchema = Type.Object({ id: Id })

/** An appid as WECHAT_APPS names it. */
export const WechatAppidSchema = Type.String({ minLength: 1, maxLength: 64 })
/** The user's openid in one WeChat app (appid): what WeChat Pay needs to charge that user through that app. */
export const WechatOpenidQuerySchema = Type.Object({ appid: WechatAppidSchema })
export const WechatOpenidSchema = Type.Object({ openid: Type.String({ minLength: 1 }) })

/** The development mailbox (auth only without MAIL_URL outside production): the mails "sent", newest first. */
export const DevMailboxQuerySchema = Type.Object({ to: Type.Optional(Type.String()) })
export const DevMailboxResponseSchema = Type.Array(Type.Object({ to: Type.String(), subject: Type.String(), text: Type.String(), sent_at: Type.String() }))

// billing

/** The balance and `chat_applied` of one commit (the Redis copy's pair, see balance-cache.ts); 404: a user auth does not know. */
export const InternalBalanceSchema = Type.Object({
  user_id: Id,
  ...BalanceCopySchema.properties
})
export type InternalBalance = Static<typeof InternalBalanceSchema>

/** Ids of the usage events billing applied, by `occurred_at` in the window. */
export const UsageEventsResponseSchema = Type.Object({ event_ids: Type.Array(Type.String()) })

// chat

export const UsageListSchema = Type.Object({
  events: Type.Array(Type.Object({ event_id: Type.String(), occurred_at: Type.String() })),
  /** Exchanges (any time) still pending with their lease expired: a process died before charging them; the sweeper settles them. */
  pending: Type.Object({ count: Type.Integer(), oldest: Type.Union([Type.String(), Type.Null()]) })
})
export const RepublishBodySchema = Type.Object({ event_ids: Type.Array(Type.String({ format: 'uuid' }), { maxItems: 10_000 }) })
export const RepublishResponseSchema = Type.Object({ requeued: Type.Integer() })

export const InternalEndpoints = {
  /** GET /internal/users/:user_id (auth). */
  user: { service: 'auth', method: 'GET', url: '/internal/users/:user_id', params: UserIdParamsSchema, response: InternalUserSchema, problems: [400, 404], notFoundIsNull: true },
  /** GET /internal/users/:user_id/wechat-openid?appid= (auth): 404 when the user has no identity in that app, or no such user. */
  wechatOpenid: { service: 'auth', method: 'GET', url: '/internal/users/:user_id/wechat-openid', params: UserIdParamsSchema, querystring: WechatOpenidQuerySchema, response: WechatOpenidSchema, problems: [400, 404], notFoundIsNull: true },
  /** GET /internal/dev-mailbox?to= (auth; the route exists only with the development mailbox). */
  devMailbox: { service: 'auth', method: 'GET', url: '/internal/dev-mailbox', querystring: DevMailboxQuerySchema, response: DevMailboxResponseSchema, problems: [] },
  /** GET /internal/balances/:user_id (billing): opens the account on first access, for users auth knows. */
  balance: { service: 'billing', method: 'GET', url: '/internal/balances/:user_id', params: UserIdParamsSchema, response: InternalBalanceSchema, problems: [400, 404], notFoundIsNull: true },
  /** GET /internal/usage-events?since=&until= (billing): for `pnpm ops usage:reconcile`. */
  usageEvents: { service: 'billing', method: 'GET', url: '/internal/usage-events', querystring: WindowQuerySchema, response: UsageEventsResponseSchema, problems: [400] },
  /** GET /internal/usage?since=&until= (chat): recorded usage in the window, and stale pending exchanges. */
  usage: { service: 'chat', method: 'GET', url: '/internal/usage', querystring: WindowQuerySchema, response: UsageListSchema, problems: [400] },
  /** POST /internal/usage/republish (chat): puts the usage events back in the outbox (rebuilt from the usage row if pruned). */
  usageRepublish: { service: 'chat', method: 'POST', url: '/internal/usage/republish', body: RepublishBodySchema, response: RepublishResponseSchema, problems: [400] }
} as const satisfies Record<string, InternalEndpoint>

export const internalBalancePath = (userId: number) => internalPath(InternalEndpoints.balance, { params: { user_id: userId } })
