// `pnpm ops usage:reconcile`: compares chat's recorded usage with billing's applied events (internal HTTP
// endpoints, never another service's schema) and has chat re-publish what billing never received.
import { billingInternal, chatInternal } from '@chat-platform/platform'
import type { BillingOpsContext } from './context.ts'

export interface ReconcileOptions { since: Date, until?: Date, dryRun?: boolean, graceSeconds?: number }
export interface ReconcileResult {
  since: Date
  until: Date
  /** The window holds nothing settled yet (`until` not after `since`): nothing was asked or compared. */
  empty: boolean
  recorded: number
  applied: number
  missing: string[]
  requeued: number
  /** Exchanges chat still holds pending with an expired lease (their process died before charging them). */
  pending: number
}

const CHUNK = 500
export const DEFAULT_GRACE_SECONDS = 60

export async function usageReconcile (ctx: BillingOpsContext, opts: ReconcileOptions): Promise<ReconcileResult> {
  // Without --until, the newest events are left out: they may simply still be on their way.
  const until = opts.until ?? new Date(Date.now() - (opts.graceSeconds ?? DEFAULT_GRACE_SECONDS) * 1000)
  if (until.getTime() <= opts.since.getTime()) {
    return { since: opts.since, until, empty: true, recorded: 0, applied: 0, missing: [], requeued: 0, pending: 0 }
  }
  const window = { since: opts.since.toISOString(), until: until.toISOString() }
  const timeoutMs = 30_000
  const chatApi = chatInternal(ctx.config.CHAT_URL, { service: `chat (${ctx.config.CHAT_URL})`, timeoutMs })
  const chat = await chatApi.usage(window)
  const billing = await billingInternal(ctx.config.BILLING_URL, { service: `billing (${ctx.config.BILLING_URL})`, timeoutMs }).usageEvents(window)
  const have = new Set(billing.event_ids)
  const missing = chat.events.map((e) => e.event_id).filter((id) => !have.has(id))
  let requeued = 0
  if (!opts.dryRun) {
    for (let i = 0; i < missing.length; i += CHUNK) {
      requeued += (await chatApi.republish(missing.slice(i, i + CHUNK))).requeued
    }
  }
  return { since: opts.since, until, empty: false, recorded: chat.events.length, applied: billing.event_ids.length, missing, requeued, pending: chat.pending?.count ?? 0 }
}
