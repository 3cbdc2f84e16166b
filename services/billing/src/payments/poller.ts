// The order poller (one in every billing replica): pending orders whose callback never came are asked about, expired
// ones are closed at WeChat Pay and then here. Rows are leased (FOR UPDATE SKIP LOCKED + checked_at), so replicas
// never ask about the same order at once.
import { leasePendingOrders } from '../db/repositories/orders.ts'
import { checkOrder, type CheckOutcome, type Payments } from './orders.ts'

const BATCH = 50

export interface OrderPoller {
  start: () => void
  /** Stops the timer and waits for the round in flight. */
  stop: () => Promise<void>
  /** One round now (tests, and the timer): leases due orders and checks each; returns the outcomes. */
  runOnce: () => Promise<Map<string, CheckOutcome>>
}

export function createOrderPoller (p: Payments): OrderPoller {
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> | undefined
  let started = false
  let closing = false

  async function runOnce (): Promise<Map<string, CheckOutcome>> {
    const outcomes = new Map<string, CheckOutcome>()
    if (!p.provider) return outcomes
    for (;;) {
      const due = await leasePendingOrders(p.books.db, p.config.pollAfterMs, BATCH)
      for (const order of due) outcomes.set(order.order_no, await checkOrder(p, order, 'poller', { closeExpired: true }))
      if (due.length < BATCH || closing) break
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
      await running
    },
    runOnce
  }
}
