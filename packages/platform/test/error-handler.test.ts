// Errors from a dependency that cannot be reached (Postgres away, a reset socket) are 503, not 500.
import t from 'tap'
import { classify, isUnreachable } from '../src/index.ts'

const err = (props: Record<string, unknown>) => Object.assign(new Error(String(props.message ?? 'x')), props) as any

t.test('connection failures and Postgres unavailability are unreachable', async (t) => {
  for (const e of [
    err({ message: 'Connection terminated unexpectedly' }),
    err({ message: 'timeout exceeded when trying to connect' }),
    err({ message: 'connect ECONNREFUSED 10.0.0.5:5432', code: 'ECONNREFUSED' }),
    err({ message: 'read ECONNRESET', code: 'ECONNRESET' }),
    err({ message: 'the database system is shutting down', code: '57P03' }),
    err({ message: 'connection failure', code: '08006' }),
    err({ message: 'wrapped', cause: err({ message: 'x', code: 'ECONNREFUSED' }) })
  ]) {
    t.ok(isUnreachable(e), e.message)
    const c = classify(e)
    t.equal(c.code, 'service_unavailable')
    t.notMatch(c.detail, /5432|10\.0\.0\.5|ECONN/, 'no internals in the detail')
  }
})

t.test('other errors stay internal errors', async (t) => {
  for (const e of [err({ message: 'duplicate key', code: '23505' }), err({ message: 'boom' }), err({ message: 'bigint out of range', code: '22003' })]) {
    t.notOk(isUnreachable(e), e.message)
    t.equal(classify(e).code, 'internal_error')
  }
})
