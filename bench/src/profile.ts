// Run sizes: the full run (about ten minutes on two cores) and --quick (small counts, under a minute).

export interface Profile {
  quick: boolean
  gateway: { rounds: number, warmupS: number, throughputS: number, connections: number, latencyS: number, rateS: number, rate: number, rateConnections: number }
  send: { warmupS: number, zeroUsers: number, zeroS: number, slowUsers: number, slowS: number, slowLatencyMs: number, sessionLength: number }
  stream: { requests: number, upstreamLatencyMs: number }
  usage: { events: number, users: number, steadyRate: number, steadyS: number, batchSize: number, rawConcurrency: number[] }
}

export const FULL: Profile = {
  quick: false,
  gateway: { rounds: 3, warmupS: 3, throughputS: 6, connections: 50, latencyS: 3, rateS: 5, rate: 1000, rateConnections: 10 },
  send: { warmupS: 3, zeroUsers: 16, zeroS: 15, slowUsers: 50, slowS: 15, slowLatencyMs: 200, sessionLength: 10 },
  stream: { requests: 60, upstreamLatencyMs: 20 },
  usage: { events: 50_000, users: 1_000, steadyRate: 200, steadyS: 20, batchSize: 100, rawConcurrency: [1, 4] }
}

export const QUICK: Profile = {
  quick: true,
  gateway: { rounds: 1, warmupS: 0.5, throughputS: 1, connections: 20, latencyS: 1, rateS: 1, rate: 1000, rateConnections: 10 },
  send: { warmupS: 0.5, zeroUsers: 4, zeroS: 1.5, slowUsers: 10, slowS: 1.5, slowLatencyMs: 200, sessionLength: 10 },
  stream: { requests: 5, upstreamLatencyMs: 20 },
  usage: { events: 2_000, users: 100, steadyRate: 200, steadyS: 2, batchSize: 100, rawConcurrency: [1, 4] }
}
