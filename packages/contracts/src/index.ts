// Shared contracts: HTTP API schemas, problem format, error codes, events.
export * from './api.ts'
export * from './errors.ts'
export * from './events.ts'
