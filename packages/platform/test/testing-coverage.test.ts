// Children and tap's coverage: a TypeScript child transpiles exactly as the test process does, a bundle under dist/
// records nothing even with coverage on, and a child run `withoutCoverage` adds nothing to the report.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
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
  // The child prints the id tap's hook gave it; its records are .tap/processinfo/<id>.json and .tap/coverage/<id>.json.
  const script = "process.stdout.write(String(globalThis[Symbol.for('@tapjs/processinfo.ProcessInfoNodeData')]?.uuid))"
  const covered = (env: NodeJS.ProcessEnv) => {
    const id = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' }).stdout
    t.ok(existsSync(join(tapDir, 'processinfo', `${id}.json`)), `tap recorded the child (${id})`)
    return existsSync(join(tapDir, 'coverage', `${id}.json`))
  }
  t.equal(covered({ ...process.env }), true, 'a plain child is covered')
  const env = { ...process.env, NODE_V8_COVERAGE: '/tmp/elsewhere' }
  t.equal(covered(withoutCoverage(env)), false, 'a child run withoutCoverage() is not')
  t.equal(env.NODE_V8_COVERAGE, '/tmp/elsewhere', 'the given environment is not changed')
})

t.test('a bundle (dist/) records no coverage, neither its own nor its sources\' (tap\'s coverage-exclude)', { skip: process.env._TAPJS_PROCESSINFO_COVERAGE_ === '1' ? false : 'coverage is off in this run' }, async (t) => {
  const root = process.env._TAPJS_PROCESSINFO_CWD_ ?? process.cwd()
  // scripts/test.mjs built it before the run (tap resolves the exclusion's globs when it starts).
  const bundle = join(root, 'ops/dist/cli.mjs')
  t.ok(existsSync(bundle), 'the ops bundle was built before the run')
  // Loading the bundle runs its top level (the platform's and billing's modules), not the CLI (argv[1] is not it).
  const script = `await import(${JSON.stringify(bundle)}); process.stdout.write(String(globalThis[Symbol.for('@tapjs/processinfo.ProcessInfoNodeData')]?.uuid))`
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LOG_LEVEL: 'silent' }, encoding: 'utf8' })
  t.equal(res.status, 0, res.stderr)
  const file = join(root, '.tap', 'coverage', `${res.stdout}.json`)
  const cov = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) as { result?: { url: string }[], 'source-map-cache'?: Record<string, unknown> } : {}
  const ours = [...(cov.result ?? []).map((r) => r.url), ...Object.keys(cov['source-map-cache'] ?? {})].filter((u) => u.includes('/dist/') || (u.endsWith('.ts') && !u.includes('/node_modules/')))
  t.same(ours, [], 'nothing of the bundle or of the sources it was built from')
})
