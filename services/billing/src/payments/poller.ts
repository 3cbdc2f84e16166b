// The order poller (one in every billing replica): pending orders whose callback never came are asked about, expired
// ones are closed at WeChat Pay and then here. Rows are leased (FOR UPDATE SKIP LOCKED + checked_at), so replicas
// never ask about the same order at once.
import { leasePendingOrders } from '../db/repositories/orders.ts'
import { checkOrder, type CheckOutcome, type Payments } from './orders.ts'

const BATCH = 50
/**
 * How long stop() waits for the order being checked when it is called: WeChat Pay answers in well under a second,
 * but a stuck call takes its whole timeout (10 s, twice for an expired order: query, close), longer than shutdown's
 * grace. The check left behind is harmless: its order was leased (asked again after ORDER_POLL_AFTER_MS, by any
 * replica) and settling is one transaction.
 */
const STOP_WAIT_MS = 3000

export interface OrderPoller {
  start: () => void
  /** Stops the timer; the round in flight stops after the order being checked, waited for at most stopWaitMs. */
  stop: () => Promise<void>
  /** One round now (tests, and the timer): leases due orders and checks each; returns the outcomes. */
  runOnce: () => Promise<Map<string, CheckOutcome>>
}

export function createOrderPoller (p: Payments, opts: { stopWaitMs?: number } = {}): OrderPoller {
  const stopWaitMs = opts.stopWaitMs ?? STOP_WAIT_MS
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> | undefined
  let started = false
  let closing = false

  async function runOnce (): Promise<Map<string, CheckOutcome>> {
    const outcomes = new Map<string, CheckOutcome>()
    if (!p.provider) return outcomes
    for (;;) {
      if (closing) break
      const due = await leasePendingOrders(p.books.db, p.config.pollAfterMs, BATCH)
      for (const order of due) {
        // Shutting down: the orders leased but not asked about wait for the next round (after ORDER_POLL_AFTER_MS).
        if (closing) break
        outcomes.set(order.order_no, await checkOrder(p, order, 'poller', { closeExpired: true }))
      }
      if (due.length < BATCH) break
    }
    return outcomes
  }

  const tick = () => {
    running = runOnce()
      .catch((err) => p.books.log.warn({ err: (err as Error).message }, 'order poller round failed; trying again next round'))
      .finally(() => {
        running = undefined
        if (started && !closing) timer = setTimeout(tick, p.config.pollMs)
      })
  }

  return {
    start () {
      if (p.config.pollMs === 0 || !p.provider || started) return
      started = true
      timer = setTimeout(tick, p.config.pollMs)
    },
    async stop () {
      closing = true
      clearTimeout(timer)
      if (!running) return
      let waited: NodeJS.Timeout | undefined
      const gaveUp = await Promise.race([
        running.then(() => false),
        new Promise<boolean>((resolve) => { waited = setTimeout(() => resolve(true), stopWaitMs) })
      ])
      clearTimeout(waited)
      if (gaveUp) p.books.log.warn({ waited_ms: stopWaitMs }, 'order poller: WeChat Pay has not answered; stopping without waiting for the order being checked')
    },
    runOnce
  }
}
