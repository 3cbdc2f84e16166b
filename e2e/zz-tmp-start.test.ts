import t from 'tap'
import { startSystem } from '/work/main/e2e/support/system.ts'
import { runAudit } from '/work/main/e2e/support/client.ts'
const t0 = Date.now()
const system = await startSystem(t, {})
t.comment('# started in', Date.now() - t0)
const t1 = Date.now()
const a = await runAudit(system)
t.comment('# audit in', Date.now() - t1, a.code)
const t2 = Date.now()
await system.stop('billing', 'SIGKILL'); await system.start('billing')
t.comment('# billing restart in', Date.now() - t2)
t.pass()
