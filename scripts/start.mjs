// `pnpm start`: builds the four processes (scripts/build.mjs, under a second), then runs gateway, auth, chat and
// billing together under plain node; SIGTERM stops all.
import { spawn } from 'node:child_process'
import { relative } from 'node:path'
import { ROOT, TARGETS, build } from './build.mjs'

const procs = ['auth', 'billing', 'chat', 'gateway']
try {
  for (const r of await build(procs)) process.stderr.write(`[build] ${relative(ROOT, r.outfile)} ${(r.bytes / 1024).toFixed(0)} kB in ${r.ms.toFixed(0)} ms\n`)
} catch (err) {
  process.stderr.write(`[start] build failed: ${err.message}\n`)
  process.exit(1)
}

// Per-process ports: AUTH_PORT, CHAT_PORT, BILLING_PORT, GATEWAY_PORT (PORT alone would give all four the same one).
// A service moved this way is also where the others look for it, unless AUTH_URL/CHAT_URL/BILLING_URL say otherwise.
const portOf = (name) => process.env[`${name.toUpperCase()}_PORT`]
const env = { ...process.env }
delete env.PORT
for (const name of ['auth', 'chat', 'billing']) {
  const url = `${name.toUpperCase()}_URL`
  if (portOf(name) && !env[url]) env[url] = `http://127.0.0.1:${portOf(name)}`
}

let stopping = false
const children = procs.map((name) => {
  const { dir, out } = TARGETS[name]
  // The same command as each package's `start` script and the images' CMD.
  const child = spawn(process.execPath, ['--enable-source-maps', out], { cwd: `${ROOT}${dir}`, stdio: ['ignore', 'inherit', 'inherit'], env: portOf(name) ? { ...env, PORT: portOf(name) } : env })
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[start] ${name} exited (${signal ?? code}); stopping the others\n`)
      stop(code || 1)
    }
  })
  return child
})

// A child killed by a signal keeps exitCode null (signalCode is set instead).
const running = (c) => c.exitCode === null && c.signalCode === null

function stop (code = 0) {
  if (stopping) return
  stopping = true
  let left = children.filter(running).length
  if (left === 0) process.exit(code)
  for (const c of children) {
    if (!running(c)) continue
    c.once('exit', () => { if (--left === 0) process.exit(code) })
    c.kill('SIGTERM')
  }
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))
