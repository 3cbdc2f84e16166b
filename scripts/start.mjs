// `pnpm start`: runs gateway, auth, chat and billing together, prefixing their logs; SIGTERM stops all.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const tsx = `${root}node_modules/.bin/tsx`
const procs = [
  ['auth', 'services/auth'],
  ['billing', 'services/billing'],
  ['chat', 'services/chat'],
  ['gateway', 'gateway']
]

let stopping = false
const children = procs.map(([name, dir]) => {
  const child = spawn(tsx, ['src/server.ts'], { cwd: `${root}${dir}`, stdio: ['ignore', 'inherit', 'inherit'], env: process.env })
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[start] ${name} exited (${signal ?? code}); stopping the others\n`)
      stop(code || 1)
    }
  })
  return child
})

function stop (code = 0) {
  if (stopping) return
  stopping = true
  let left = children.filter((c) => c.exitCode === null).length
  if (left === 0) process.exit(code)
  for (const c of children) {
    if (c.exitCode !== null) continue
    c.once('exit', () => { if (--left === 0) process.exit(code) })
    c.kill('SIGTERM')
  }
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))
