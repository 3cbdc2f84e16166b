// Children and tap's coverage: a TypeScript child transpiles exactly as the test process does, and a child
// run `withoutCoverage` adds nothing to the report.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { typescriptArgs, withoutCoverage } from '../src/testing/index.ts'
import { sample } from './fixtures/sample.ts'

t.test('a child run with typescriptArgs() sees the same transpiled code as this process', async (t) => {
  const file = fileURLToPath(new URL('./fixtures/sample.ts', import.meta.url))
  const res = spawnSync(process.execPath, [...typescriptArgs(), file, '--print'], { encoding: 'utf8' })
  t.equal(res.status, 0, res.stderr)
  // V8 coverage is merged by offsets into this text: another transpiler (tsx) prints it differently.
  t.equal(res.stdout, sample.toString())
})

t.test('a child run with withoutCoverage() leaves no coverage for the report', { skip: process.env._TAPJS_PROCESSINFO_COVERAGE_ === '1' ? false : 'coverage is off in this run' }, async (t) => {
  const tapDir = join(process.env._TAPJS_PROCESSINFO_CWD_ ?? process.cwd(), '.tap')
  const coverageOf = (pid: number) => {
    const info = readdirSync(join(tapDir, 'processinfo')).map((f) => JSON.parse(readFileSync(join(tapDir, 'processinfo', f), 'utf8')))
      .find((p: { pid: number }) => p.pid === pid)
    t.ok(info, `tap recorded process ${pid}`)
    return existsSync(join(tapDir, 'coverage', `${info.uuid}.json`))
  }
  const child = (env: NodeJS.ProcessEnv) => spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { env, encoding: 'utf8' })
  const counted = child({ ...process.env })
  t.equal(coverageOf(Number(counted.stdout)), true, 'a plain child is covered')
  const env = { ...process.env, NODE_V8_COVERAGE: '/tmp/elsewhere' }
  const uncounted = child(withoutCoverage(env))
  t.equal(coverageOf(Number(uncounted.stdout)), false, 'a child run withoutCoverage() is not')
  t.equal(env.NODE_V8_COVERAGE, '/tmp/elsewhere', 'the given environment is not changed')
})
