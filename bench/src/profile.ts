// Run sizes: the full run (about ten minutes on two cores) and --quick (small counts, under a minute).

export interface Profile {
  quick: boolean
  gateway: { rounds: number, warmupS: number, throughputS: number, connections: number, latencyS: number, rateS: number, rate: number, rateConnections: number }
  send: { warmupS: number, zeroUsers: number, zeroS: number, slowUsers: number, slowS: number, slowLatencyMs: number, sessionLength: number }
  stream: { requests: number, upstreamLatencyMs: number }
  usage: { events: number, users: number, steadyRate: number, steadyS: number, batchSize: number, rawConcurrency: number[] }
  /** Sends with billing running vs stopped (its balance copy lagging), `rounds` interleaved pairs of `seconds` each. */
  admission: { users: number, seconds: number, rounds: number }
  /** Gateway CPU per request with 0 and `revoked` revocations in its list; `micro` isRevoked calls in process. */
  revocation: { revoked: number, throughputS: number, rounds: number, connections: number, micro: number }
  /** Sends through one provider vs two with the first down (breaker open; breaker never opening). */
  providers: { users: number, seconds: number }
  /** Paid orders whose signed callbacks are posted through the gateway, `concurrency` at a time. */
  callbacks: { orders: number, concurrency: number }
  curves: {
    sessionLengths: number[]
    sendsPerPoint: number
    ledgerRows: number[]
    readsPerPoint: number
    applyUsers: number[]
    applyEvents: number
    /** Backlog sizes, drained one after the other; the raw publish baseline is taken at the largest. */
    outboxBacklog: number[]
    gatewayTokens: number[]
  }
}

export const FULL: Profile = {
  quick: false,
  gateway: { rounds: 3, warmupS: 3, throughputS: 6, connections: 50, latencyS: 3, rateS: 5, rate: 1000, rateConnections: 10 },
  send: { warmupS: 3, zeroUsers: 16, zeroS: 15, slowUsers: 50, slowS: 15, slowLatencyMs: 200, sessionLength: 10 },
  stream: { requests: 60, upstreamLatencyMs: 20 },
  usage: { events: 50_000, users: 1_000, steadyRate: 200, steadyS: 20, batchSize: 100, rawConcurrency: [1, 4] },
  admission: { users: 8, seconds: 8, rounds: 2 },
  revocation: { revoked: 10_000, throughputS: 5, rounds: 3, connections: 50, micro: 2_000_000 },
  providers: { users: 8, seconds: 8 },
  callbacks: { orders: 1_000, concurrency: 16 },
  curves: {
    sessionLengths: [10, 100, 1_000],
    sendsPerPoint: 60,
    ledgerRows: [1_000, 10_000, 100_000],
    readsPerPoint: 40,
    applyUsers: [1, 100, 10_000],
    applyEvents: 20_000,
    outboxBacklog: [10_000, 100_000],
    gatewayTokens: [1_000, 10_000, 100_000]
  }
}

export const QUICK: Profile = {
  quick: true,
  gateway: { rounds: 1, warmupS: 0.5, throughputS: 1, connections: 20, latencyS: 1, rateS: 1, rate: 1000, rateConnections: 10 },
  send: { warmupS: 0.5, zeroUsers: 4, zeroS: 1.5, slowUsers: 10, slowS: 1.5, slowLatencyMs: 200, sessionLength: 10 },
  stream: { requests: 5, upstreamLatencyMs: 20 },
  usage: { events: 2_000, users: 100, steadyRate: 200, steadyS: 2, batchSize: 100, rawConcurrency: [1, 4] },
  admission: { users: 4, seconds: 1.5, rounds: 1 },
  revocation: { revoked: 2_000, throughputS: 1, rounds: 2, connections: 20, micro: 200_000 },
  providers: { users: 4, seconds: 1.5 },
  callbacks: { orders: 60, concurrency: 8 },
  curves: {
    sessionLengths: [10, 100, 1_000],
    sendsPerPoint: 8,
    ledgerRows: [1_000, 5_000, 20_000],
    readsPerPoint: 8,
    applyUsers: [1, 100, 1_000],
    applyEvents: 2_000,
    outboxBacklog: [1_000, 5_000],
    gatewayTokens: [300, 1_000, 3_000]
  }
}
