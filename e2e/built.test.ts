// The built bundles (scripts/build.mjs → <process>/dist/server.mjs, what `pnpm start` and the images run) under
// plain node: the user journey through the gateway, the docs UI's static files, a problem answer, a clean SIGTERM.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { freePort, waitFor, withoutCoverage } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem, type ProcName } from './support/system.ts'
import { SIGNUP_BONUS, assertExactBalance, assertProblem, createSession, recharge, sendStreaming, uniqueEmail, type User } from './support/client.ts'

t.setTimeout(180_000)

const sim = await startSimulator()
t.teardown(() => sim.close())
const system = await startSystem(t, { runtime: 'dist', env: { OPENAI_BASE_URL: sim.url, OPENAI_API_KEY: 'sk-e2e' } })
const PROCS: ProcName[] = ['gateway', 'auth', 'chat', 'billing']
const DIRS: Record<ProcName, string> = { gateway: 'gateway', auth: 'services/auth', chat: 'services/chat', billing: 'services/billing' }

t.test('every process is plain node running its bundle', async (t) => {
  for (const name of PROCS) {
    const pid = system.procs.get(name)!.child!.pid!
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
    t.same(argv.slice(1), ['--enable-source-maps', 'dist/server.mjs'], `${name}: node --enable-source-maps dist/server.mjs, no loader`)
    const dist = new URL(`../${DIRS[name]}/dist/`, import.meta.url)
    t.notMatch(readFileSync(new URL('server.mjs', dist), 'utf8'), /from\s*["']@chat-platform\//, `${name}: our workspace code is bundled`)
    t.ok(JSON.parse(readFileSync(new URL('server.mjs.map', dist), 'utf8')).sources.includes('../src/server.ts'), `${name}: stack frames map to the .ts sources`)
  }
  t.equal((await system.request('GET', '/healthz')).status, 200)
  t.equal((await system.request('GET', '/readyz')).status, 200, 'readyz: every service, Postgres, NATS and Redis answer')
})

t.test('register → login → verify → session → send → stream → balance → recharge', async (t) => {
  const email = uniqueEmail('built')
  const reg = await system.request('POST', '/api/auth/register', { body: { email, password: 'password-1', nickname: 'built' } })
  t.equal(reg.status, 200, 'register (argon2 through its native addon)')
  const login = await system.request('POST', '/api/auth/email-login', { body: { email, password: 'password-1' } })
  t.equal(login.status, 200, 'login')
  const u: User = { id: reg.body.user_id, email, password: 'password-1', token: login.body.access_token, recharged: 0 }
  const verify = await system.request('GET', '/api/auth/verify', { token: u.token })
  t.same(verify.body, { user: { id: u.id, email, nickname: 'built', tokens: SIGNUP_BONUS } }, 'verify: the signup bonus arrived through NATS')
  const sid = await createSession(system, u, 'bundle')
  const sent = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'Hello from the bundle' } })
  t.equal(sent.status, 200, 'send (the openai client against the simulator, tokens counted by js-tiktoken)')
  t.match(sent.body, { session_id: sid, role: 'assistant', content: /Hello from the bundle/ })
  t.ok(sent.body.tokens > 0, 'the reply has tokens')
  const streamed = await sendStreaming(system, u.token, sid, 'and stream one')
  t.equal(streamed.status, 200)
  t.equal(streamed.events.at(-1)?.event, 'done', 'streamed through the gateway')
  await assertExactBalance(t, system, u)
  const top = await recharge(system, u, 500)
  t.equal(top.status, 200, 'recharge')
  await assertExactBalance(t, system, u)
})

t.test('problem answers, the docs UI and its static files', async (t) => {
  assertProblem(t, await system.request('GET', '/api/user/balance'), 401, 'unauthorized', 'no token')
  assertProblem(t, await system.request('POST', '/api/auth/register', { body: { email: 'x' } }), 400, 'validation_failed', 'bad body')
  const docs = await system.request('GET', '/docs/json')
  t.equal(docs.status, 200)
  t.ok(docs.body.paths['/api/sessions/{session_id}/messages'], 'the merged OpenAPI document')
  const ui = await fetch(`${system.gatewayUrl}/docs/static/index.html`)
  t.equal(ui.status, 200, 'swagger-ui static files resolved from node_modules')
  t.match(await ui.text(), /swagger/i)
})

t.test('`pnpm --dir <part> start` stops on SIGTERM: the node process gets the signal and frees its port', async (t) => {
  // pnpm signals its direct child and exits; the start scripts `exec` node, so that child is node itself.
  const port = await freePort()
  const pnpm = process.env.npm_execpath?.includes('pnpm') ? [process.execPath, process.env.npm_execpath] : ['pnpm']
  const child = spawn(pnpm[0], [...pnpm.slice(1), '--dir', 'gateway', 'start'], {
    cwd: fileURLToPath(new URL('../', import.meta.url)),
    env: withoutCoverage({ ...process.env, ...system.env, PORT: String(port), AUTH_URL: system.url('auth'), CHAT_URL: system.url('chat'), BILLING_URL: system.url('billing') }),
    stdio: 'ignore'
  })
  t.teardown(() => { child.kill('SIGKILL') })
  const healthy = async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.status === 200
  await waitFor(healthy, { timeoutMs: 60_000, what: 'the gateway started by pnpm' })
  child.kill('SIGTERM')
  const refused = async () => await fetch(`http://127.0.0.1:${port}/healthz`).then(() => false, () => true)
  await waitFor(refused, { timeoutMs: 15_000, what: 'the port freed after SIGTERM' })
  t.pass('the gateway under pnpm stopped on SIGTERM')
})

t.test('SIGTERM: every process drains and exits 0', async (t) => {
  for (const name of ['gateway', 'chat', 'auth', 'billing'] as ProcName[]) t.equal(await system.stop(name), 0, `${name} exited 0`)
})
