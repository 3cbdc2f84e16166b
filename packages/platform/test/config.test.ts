// Config loading: defaults, conversion, and errors that name the variable at fault.
import t from 'tap'
import { Type } from 'typebox'
import { loadConfig, ConfigError, CommonEnv, DatabaseEnv, Port } from '../src/index.ts'

const Schema = Type.Object({ ...CommonEnv, ...DatabaseEnv, PORT: Port(3001) })

t.test('applies defaults and converts numbers', async (t) => {
  const c = loadConfig(Schema, { PORT: '4000' })
  t.equal(c.PORT, 4000)
  t.equal(c.HOST, '127.0.0.1')
  t.equal(c.DATABASE_URL, 'postgres://postgres@127.0.0.1:5432/chat_platform')
})

t.test('a bad variable is named in the error', async (t) => {
  const err = t.throws(() => loadConfig(Schema, { PORT: 'eighty', DATABASE_URL: 'mysql://x' })) as ConfigError
  t.type(err, ConfigError)
  t.match(err.message, /PORT/)
  t.match(err.message, /DATABASE_URL/)
})
