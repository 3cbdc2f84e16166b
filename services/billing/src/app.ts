// The billing service as a Fastify app: registers everything explicitly, in order.
import type { FastifyServerOptions } from 'fastify'
import { Counter } from 'prom-client'
import { createHttpApp, healthPlugin, openapiPlugin, jwtAuthPlugin, loadPublicKey, pingDb, pingNats, pingRedis } from '@chat-platform/platform'
import type { BillingConfig } from './config.ts'
import type { BillingDeps } from './deps.ts'
import { balanceRoutes } from './routes/balance.ts'
import { rechargeRoutes } from './routes/recharge.ts'
import { transactionRoutes } from './routes/transactions.ts'
import { internalRoutes } from './routes/internal.ts'
import { orderRoutes } from './routes/orders.ts'
import { wechatpayNotifyRoutes } from './routes/wechatpay-notify.ts'
import { adminOrderRoutes } from './routes/admin-orders.ts'
import { redemptionRoutes } from './routes/redemption.ts'
import { adminRoutes } from './routes/admin.ts'
import { usageRoutes } from './routes/usage.ts'

export interface BuildOptions { fastify?: FastifyServerOptions }

export function buildApp (deps: BillingDeps, config: BillingConfig, opts: BuildOptions = {}) {
  const app = createHttpApp({ service: 'billing', logLevel: config.LOG_LEVEL, fastify: opts.fastify, internalToken: config.INTERNAL_TOKEN })
  app.register(openapiPlugin, { service: 'billing' })
  app.register(healthPlugin, {
    service: 'billing',
    checks: { postgres: () => pingDb(deps.db), nats: () => pingNats(deps.nc), redis: () => pingRedis(deps.redis), consumers: () => consumersBound(deps), revocations: () => deps.revocations.ready() }
  })
  app.register(jwtAuthPlugin, { publicKey: loadPublicKey(config), issuer: config.JWT_ISSUER, revocations: deps.revocations.list })
  app.after(() => {
    // The counts live on the consumers (they only grow); the registry reads them at scrape time.
    app.metrics.registerMetric(new Counter({
      name: 'billing_consumer_events_total',
      help: 'Events handled by this process\'s consumers since it started, by outcome (dead_lettered = set aside, retried = left for a redelivery)',
      labelNames: ['consumer', 'outcome'],
      registers: [],
      collect () {
        this.reset()
        for (const [name, c] of Object.entries(deps.consumers)) {
          this.inc({ consumer: name, outcome: 'applied' }, c.stats.applied)
          this.inc({ consumer: name, outcome: 'duplicate' }, c.stats.duplicates)
          this.inc({ consumer: name, outcome: 'dead_lettered' }, c.stats.deadLettered)
          this.inc({ consumer: name, outcome: 'retried' }, c.stats.retried)
        }
      }
    }))
    const payments = deps.payments.stats
    app.metrics.registerMetric(new Counter({
      name: 'billing_wechatpay_callbacks_total',
      help: 'WeChat Pay callbacks this process answered, by outcome (paid, already_paid, mismatch = flagged, unknown_order, not_success, rejected = not trusted, failed = answered 500 for a retry)',
      labelNames: ['outcome'],
      registers: [],
      collect () {
        this.reset()
        for (const [outcome, n] of payments.callbacks) this.inc({ outcome }, n)
      }
    }))
    app.metrics.registerMetric(new Counter({
      name: 'billing_orders_settled_total',
      help: 'Orders WeChat Pay reported paid to this process, by source (notify, query, poller, reconcile) and outcome (only paid credits)',
      labelNames: ['source', 'outcome'],
      registers: [],
      collect () {
        this.reset()
        for (const [key, n] of payments.settled) {
          const [source, outcome] = key.split(':')
          this.inc({ source, outcome }, n)
        }
      }
    }))
    app.metrics.registerMetric(new Counter({
      name: 'billing_orders_flagged_total',
      help: 'Orders this process flagged for an operator (a callback or query that did not match the order, a payment after the close); GET /api/admin/orders?status=flagged lists them',
      registers: [],
      collect () {
        this.reset()
        this.inc(payments.flagged)
      }
    }))
  })
  app.register(balanceRoutes, { deps })
  app.register(rechargeRoutes, { deps, config })
  app.register(transactionRoutes, { deps })
  app.register(redemptionRoutes, { deps, config })
  app.register(adminRoutes, { deps })
  app.register(usageRoutes, { deps, config })
  app.register(orderRoutes, { deps })
  app.register(wechatpayNotifyRoutes, { deps })
  app.register(adminOrderRoutes, { deps })
  app.register(internalRoutes, { deps })
  return app
}

/** Ready once every consumer is bound: one still waiting for its stream (its producer has not created it) is not. */
async function consumersBound (deps: BillingDeps): Promise<void> {
  for (const c of Object.values(deps.consumers)) await c.ready()
}
