// Test helpers: a real Postgres database per test file cloned from a migrated template, unique NATS
// namespaces and Redis prefixes, JWT keys, and private nats-server / redis-server processes for fault tests.
export * from './contracts.ts'
export * from './coverage.ts'
export * from './database.ts'
export * from './isolation.ts'
export * from './servers.ts'
export * from './tokens.ts'
