// Shared contracts: HTTP API schemas, problem format, error codes, events, pricing, billing's balance copy, internal endpoints.
export * from './api.ts'
export * from './errors.ts'
export * from './events.ts'
export * from './pricing.ts'
export * from './balance-cache.ts'
export * from './internal.ts'
export * from './models.ts'
