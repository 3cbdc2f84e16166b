// Static validation of the deployment files with real parsers (compose schema + linter, Dockerfile parser and
// linter, .dockerignore matcher, Kubernetes models, nats-server, kustomize) and their env checked against the
// schemas each process validates at boot.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { DCLinter } from 'dclint'
import { DockerfileParser } from 'dockerfile-ast'
import { validate as lintDockerfile } from 'dockerfile-utils'
import dockerignoreModule from '@balena/dockerignore'
import { APPS, APP_DIR, loadEnvSchemas, loadYaml, loadYamlDocuments, readRepo, repoPath, interpolatedNames, dotenvKeys, type App, type EnvSchema } from './helpers.ts'

const schemas = await loadEnvSchemas()
const compose = loadYaml('docker-compose.yml')
const composeText = readRepo('docker-compose.yml')
const INFRA = ['postgres', 'nats', 'redis'] as const
// The package is CommonJS (module.exports = factory) while its types declare a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default

const envOf = (service: string): Record<string, string> =>
  Object.fromEntries(Object.entries(compose.services[service].environment ?? {}).map(([k, v]) => [k, String(v)]))

// --- docker compose -----------------------------------------------------------------------------------

t.test('docker-compose.yml passes the Compose Specification schema and dclint', async (t) => {
  const linter = new DCLinter({
    rules: {
      // The published interface is a variable (GATEWAY_BIND, default 0.0.0.0), which the rule cannot read.
      'no-unbound-port-interfaces': 0,
      // docker-compose 1.29 (Debian's) refuses a top-level name: the project is named by -p or the directory.
      'require-project-name-field': 0
    },
    quiet: false,
    debug: false,
    exclude: []
  })
  const [result] = linter.lintFiles([repoPath('docker-compose.yml')], false)
  t.same(result.messages.map((m: { rule: string, message: string }) => `${m.rule}: ${m.message}`), [], 'no schema errors, no lint findings')
})

t.test('compose runs postgres, nats, redis and the four images', async (t) => {
  t.same(Object.keys(compose.services).filter((s) => !compose.services[s].profiles).sort(), [...APPS, ...INFRA].sort())
  t.same(Object.keys(compose.services).filter((s) => compose.services[s].profiles).sort(), ['nats-1', 'nats-2'], 'the nats-cluster profile adds two NATS nodes')
  for (const app of APPS) {
    const build = compose.services[app].build
    t.equal(build.context, '.', `${app} builds from the repository root`)
    t.equal(build.dockerfile, 'infra/Dockerfile', `${app} uses the one Dockerfile`)
    t.equal(build.target, app, `${app} builds its own stage`)
  }
  t.match(compose.services.postgres.image, /^\$\{POSTGRES_IMAGE:-postgres:1[67](\b|-)/, 'Postgres 16 or 17 unless POSTGRES_IMAGE says otherwise')
  t.match(compose.services.nats.image, /^\$\{NATS_IMAGE:-nats:2\./, 'NATS 2.x unless NATS_IMAGE says otherwise')
  t.match(compose.services.redis.image, /^\$\{REDIS_IMAGE:-redis:7\./, 'Redis 7 unless REDIS_IMAGE says otherwise')
  for (const app of APPS) {
    t.same(compose.services[app].build.args, { NODE_IMAGE: '$' + '{NODE_IMAGE:-node:24-bookworm-slim}', EXTRA_CA_CERTS: '$' + '{EXTRA_CA_CERTS:-}' }, `${app}: the Node base image and build-time CA certificates are variables`)
  }
})

t.test('compose runs on docker-compose 1.29 too: no top-level name, only keys it knows', async (t) => {
  t.notOk('name' in compose, 'no top-level name: (docker-compose 1.29 refuses it; the project is named by -p or the directory)')
  t.same(Object.keys(compose).filter((k) => !k.startsWith('x-')).sort(), ['services', 'volumes'])
  const v1 = spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' })
  if (v1.error) return t.skip('docker-compose (v1) is not installed here', () => {})
  const env = { ...process.env, JWT_PUBLIC_KEY: 'k', JWT_PRIVATE_KEY: 'k', INTERNAL_TOKEN: 't', POSTGRES_PASSWORD: 'p', AUTH_DB_PASSWORD: 'p', CHAT_DB_PASSWORD: 'p', BILLING_DB_PASSWORD: 'p', AUTH_NATS_PASSWORD: 'p', CHAT_NATS_PASSWORD: 'p', BILLING_NATS_PASSWORD: 'p', GATEWAY_NATS_PASSWORD: 'p', NATS_ADMIN_PASSWORD: 'p' }
  const res = spawnSync('docker-compose', ['-f', repoPath('docker-compose.yml'), '--project-directory', repoPath('.'), 'config', '-q'], { encoding: 'utf8', env })
  t.equal(res.status, 0, `docker-compose ${v1.stdout.trim()} config accepts the file${res.status === 0 ? '' : `: ${res.stderr}`}`)
})

t.test('only the gateway publishes a port, and nothing pins a name: services scale', async (t) => {
  for (const [name, service] of Object.entries<any>(compose.services)) {
    t.notOk(service.container_name, `${name} has no container_name`)
    if (name !== 'gateway') t.notOk(service.ports, `${name} publishes nothing`)
    t.notOk(service.network_mode === 'host', `${name} is not on the host network`)
  }
  const ports: string[] = compose.services.gateway.ports
  t.equal(ports.length, 1)
  t.match(ports[0], /:8080$/, 'the gateway container port 8080 is published')
  t.match(ports[0], /\$\{GATEWAY_PORT:-8080\}/, 'on host port 8080 by default')
})

t.test('every service has a health check and waits for healthy dependencies', async (t) => {
  const uses: Record<string, (env: Record<string, string>) => boolean> = {
    postgres: (env) => 'DATABASE_URL' in env,
    nats: (env) => 'NATS_URL' in env,
    redis: (env) => 'REDIS_URL' in env
  }
  for (const [name, service] of Object.entries<any>(compose.services)) {
    t.ok(service.healthcheck?.test?.length, `${name} has a healthcheck`)
    t.ok(service.restart, `${name} restarts`)
    for (const [dep, cond] of Object.entries<any>(service.depends_on ?? {})) {
      t.equal(cond.condition, 'service_healthy', `${name} waits for ${dep} to be healthy`)
      t.ok(compose.services[dep]?.healthcheck, `${dep} has the healthcheck ${name} waits for`)
    }
  }
  for (const app of APPS) {
    const service = compose.services[app]
    t.same(service.healthcheck.test, ['CMD', 'node', '/app/healthcheck.mjs'], `${app} is checked by GET /healthz`)
    t.equal(service.init, true, `${app} runs under an init that forwards SIGTERM`)
    const env = envOf(app)
    for (const [infra, used] of Object.entries(uses)) {
      if (used(env)) t.ok(service.depends_on?.[infra], `${app} uses ${infra}, so it waits for it`)
    }
  }
  for (const upstream of ['auth', 'chat', 'billing']) {
    t.ok(compose.services.gateway.depends_on[upstream], `the gateway waits for ${upstream}`)
  }
})

t.test('each process gets exactly variables it reads, with container values', async (t) => {
  const serviceHost: Record<string, string> = { AUTH_URL: 'auth', CHAT_URL: 'chat', BILLING_URL: 'billing' }
  for (const app of APPS) {
    const env = envOf(app)
    const schema = schemas[app]
    const unknown = Object.keys(env).filter((k) => !schema.keys.has(k))
    t.same(unknown, [], `${app}: every variable compose sets is one ${APP_DIR[app]}/src/config.ts reads`)
    for (const k of schema.required) t.ok(k in env, `${app}: required ${k} is set`)
    t.equal(env.NODE_ENV, 'production', `${app} runs in production mode`)
    t.equal(env.HOST, '0.0.0.0', `${app} listens on every interface of its container`)
    t.equal(Number(env.PORT), schema.port, `${app} listens on its default port`)
    t.match(env.JWT_PUBLIC_KEY, /^\$\{JWT_PUBLIC_KEY:\?/, `${app}: JWT_PUBLIC_KEY is required from .env`)
    for (const [key, host] of Object.entries(serviceHost)) {
      if (!(key in env)) continue
      const url = new URL(env[key])
      t.equal(url.hostname, host, `${app}: ${key} names the ${host} service`)
      t.equal(Number(url.port), schemas[host as App].port, `${app}: ${key} uses ${host}'s port`)
    }
    if ('REDIS_URL' in env) t.equal(new URL(env.REDIS_URL).hostname, 'redis')
    if ('NATS_URL' in env) {
      const url = new URL(env.NATS_URL.replace(/\$\{[^}]*\}/g, 'secret'))
      t.equal(url.hostname, 'nats')
      t.equal(url.username, app, `${app} connects to NATS as its own user (infra/nats/users.conf)`)
      t.match(env.NATS_URL, new RegExp(`\\$\\{${app.toUpperCase()}_NATS_PASSWORD:\\?`), `${app}'s NATS password is required from .env`)
    }
    if ('DATABASE_URL' in env) {
      const url = new URL(env.DATABASE_URL.replace(/\$\{[^}]*\}/g, 'secret'))
      t.equal(url.hostname, 'postgres')
      t.equal(url.pathname, '/chat_platform')
      t.equal(url.username, `${app}_service`, `${app} connects as its own role (infra/postgres/init.sql)`)
      t.match(env.DATABASE_URL, new RegExp(`\\$\\{${app.toUpperCase()}_DB_PASSWORD:\\?`), `${app}'s password is required from .env`)
    }
  }
  t.match(envOf('auth').JWT_PRIVATE_KEY, /^\$\{JWT_PRIVATE_KEY:\?/, 'the signing key is required from .env')
  t.notOk('JWT_PRIVATE_KEY' in envOf('gateway'), 'only auth gets the private key')
})

t.test('.env.example documents exactly the variables compose reads', async (t) => {
  const example = readRepo('.env.example')
  const documented = dotenvKeys(example)
  const used = interpolatedNames(composeText)
  t.same([...used].filter((k) => !documented.has(k)).sort(), [], 'every variable docker-compose.yml interpolates is in .env.example')
  t.same([...documented].filter((k) => !used.has(k)).sort(), [], 'nothing in .env.example is unused')
  t.match(example, /openssl genpkey -algorithm ed25519/, 'it says how to make the JWT key pair')
  t.match(readRepo('.gitignore'), /^\.env$/m, '.env itself is never committed')
})

t.test('postgres runs init.sql with the passwords it reads, on a volume', async (t) => {
  const pg = compose.services.postgres
  t.ok(pg.volumes.some((v: string) => /^\.\/infra\/postgres\/init\.sql:\/docker-entrypoint-initdb\.d\/[^:]+\.sql(:ro)?$/.test(v)), 'init.sql is mounted as an init script')
  t.ok(pg.volumes.some((v: string) => /^pgdata:\/var\/lib\/postgresql\/data$/.test(v)), 'data on the pgdata volume')
  const sqlVars = [...readRepo('infra/postgres/init.sql').matchAll(/^\\getenv \w+ (\w+)$/gm)].map((m) => m[1])
  t.same(sqlVars.sort(), ['AUTH_DB_PASSWORD', 'BILLING_DB_PASSWORD', 'CHAT_DB_PASSWORD'])
  for (const v of sqlVars) t.ok(v in pg.environment, `postgres gets ${v}`)
  t.same(pg.healthcheck.test.slice(0, 4), ['CMD', 'pg_isready', '-h', '127.0.0.1'], 'ready over TCP, so only after init.sql ran')
})

t.test('nats: JetStream on a volume, every write synced', async (t) => {
  const nats = compose.services.nats
  const conf = readRepo('infra/nats/nats.conf')
  t.ok(nats.volumes.includes('./infra/nats:/etc/nats:ro'), 'the configs, with the users.conf they include')
  t.same(nats.command, ['--config', '/etc/nats/$' + '{NATS_CONFIG:-nats.conf}'], 'the config NATS_CONFIG names (nats-2.9.conf for Debian\'s 2.9)')
  for (const v of ['AUTH_NATS_PASSWORD', 'CHAT_NATS_PASSWORD', 'BILLING_NATS_PASSWORD', 'GATEWAY_NATS_PASSWORD', 'NATS_ADMIN_PASSWORD']) {
    t.match(nats.environment[v], new RegExp(`^\\$\\{${v}:\\?`), `nats gets ${v}, required from .env`)
    t.match(readRepo('infra/nats/users.conf'), new RegExp(`password: \\$${v}\\b`), `users.conf reads ${v}`)
  }
  const storeDir = /^\s*store_dir:\s*(\S+)/m.exec(conf)?.[1]
  const dataVolume = nats.volumes.find((v: string) => v.startsWith('natsdata:'))?.split(':')[1]
  t.ok(storeDir && dataVolume && storeDir.startsWith(dataVolume), `the JetStream store (${storeDir}) is on the natsdata volume (${dataVolume})`)
  t.match(conf, /^\s*sync_interval:\s*always\s*$/m, 'sync_interval: always')
  t.match(conf, /^\s*http_port:\s*8222\s*$/m, 'monitoring port for the health check')
  t.match(nats.healthcheck.test.join(' '), /8222\/healthz\?js-enabled-only=true/)
})

t.test('the NATS configs are accepted by nats-server', async (t) => {
  const version = spawnSync('nats-server', ['--version'], { encoding: 'utf8' })
  if (version.error) return t.skip('nats-server is not installed here', () => {})
  const [major, minor] = (/v(\d+)\.(\d+)/.exec(version.stdout)?.slice(1) ?? []).map(Number)
  const env = { ...process.env, AUTH_NATS_PASSWORD: 'a', CHAT_NATS_PASSWORD: 'c', BILLING_NATS_PASSWORD: 'b', GATEWAY_NATS_PASSWORD: 'g', NATS_ADMIN_PASSWORD: 'd', NATS_SERVER_NAME: 'nats-0' }
  for (const file of ['nats.conf', 'cluster.conf', 'nats-2.9.conf', 'cluster-2.9.conf']) {
    const res = spawnSync('nats-server', ['-t', '-c', repoPath('infra/nats', file)], { encoding: 'utf8', env })
    const problems = `${res.stdout}${res.stderr}`.split('\n').filter((l) => /\.conf:\d+:\d+|error/i.test(l))
    // sync_interval arrived in 2.10; the containers run the current 2.x, this machine may have Debian's 2.9 (its -2.9 files).
    const tolerated = major === 2 && minor < 10 ? problems.filter((l) => !/unknown field "sync_interval"/.test(l)) : problems
    t.same(tolerated, [], `${file}: nats-server v${major}.${minor} -t finds no other problem`)
    if (major > 2 || minor >= 10 || file.includes('2.9')) t.equal(res.status, 0, `${file} is valid for v${major}.${minor}`)
  }
  // The 2.9 files are the others without sync_interval (and comments): nothing else may drift.
  const body = (f: string) => readRepo('infra/nats', f).split('\n').filter((l) => !/^\s*#|sync_interval/.test(l) && l.trim()).map((l) => l.replace(/\s+#.*$/, ''))
  t.same(body('nats-2.9.conf'), body('nats.conf'), 'nats-2.9.conf = nats.conf without sync_interval')
  t.same(body('cluster-2.9.conf'), body('cluster.conf'), 'cluster-2.9.conf = cluster.conf without sync_interval')
})

t.test('generate-env.sh makes NATS passwords nats-server reads as strings', async (t) => {
  if (spawnSync('openssl', ['version']).error) return t.skip('openssl is not installed here', () => {})
  const out = spawnSync('sh', [repoPath('infra/scripts/generate-env.sh')], { encoding: 'utf8' }).stdout
  const vars = Object.fromEntries([...out.matchAll(/^(\w+_NATS_PASSWORD|NATS_ADMIN_PASSWORD)=(.*)$/gm)].map((m) => [m[1], m[2]]))
  const read = [...readRepo('infra/nats/users.conf').matchAll(/password: \$(\w+)/g)].map((m) => m[1])
  t.same(Object.keys(vars).sort(), [...read].sort(), 'a password for every NATS user')
  // nats-server parses a variable's value as a config value: `3e5…` would be a number, or refused.
  for (const [k, v] of Object.entries(vars)) t.match(v, /^[a-z][a-z0-9]{16,}$/, `${k} starts with a letter`)
  if (spawnSync('nats-server', ['--version']).error) return
  const res = spawnSync('nats-server', ['-t', '-c', repoPath('infra/nats/nats-2.9.conf')], { encoding: 'utf8', env: { ...process.env, ...vars } })
  t.equal(res.status, 0, `nats-server accepts them: ${res.stderr}`)
})

t.test('the nats-cluster profile: three nodes routed to each other, each with its own name and volume', async (t) => {
  const nodes = ['nats', 'nats-1', 'nats-2']
  const conf = readRepo('infra/nats/cluster.conf')
  const routes = [...conf.matchAll(/nats:\/\/([\w-]+):6222/g)].map((m) => m[1])
  t.same(routes.sort(), nodes, 'cluster.conf routes to the three compose services')
  t.match(conf, /^server_name: \$NATS_SERVER_NAME$/m)
  t.same(nodes.map((n) => compose.services[n].environment.NATS_SERVER_NAME), ['nats-0', 'nats-1', 'nats-2'])
  const volumes = nodes.map((n) => compose.services[n].volumes.find((v: string) => v.endsWith(':/data')))
  t.equal(new Set(volumes).size, 3, `a data volume each (${volumes.join(', ')})`)
  for (const n of nodes) t.same(compose.services[n].command, compose.services.nats.command, `${n} runs the config NATS_CONFIG names`)
  t.match(envOf('chat').STREAM_REPLICAS, /\$\{STREAM_REPLICAS:-1\}/, 'STREAM_REPLICAS from .env (3 with the cluster)')
})

// --- Dockerfile ---------------------------------------------------------------------------------------

interface Stage { name: string, from: string, instructions: { keyword: string, args: string }[] }

function dockerStages (): { stages: Stage[], globalArgs: Record<string, string> } {
  const dockerfile = DockerfileParser.parse(readRepo('infra/Dockerfile'))
  const stages: Stage[] = []
  const globalArgs: Record<string, string> = {}
  for (const ins of dockerfile.getInstructions()) {
    const keyword = ins.getKeyword()
    const flags = 'getFlags' in ins ? (ins as unknown as { getFlags: () => { getName: () => string, getValue: () => string | null }[] }).getFlags().map((f) => `--${f.getName()}=${f.getValue()}`) : []
    const args = [...flags, ins.getRawArgumentsContent() ?? ''].join(' ').replace(/\\\n/g, ' ').replace(/\s+/g, ' ').trim()
    if (keyword === 'FROM') {
      const [from, , name] = args.split(' ')
      stages.push({ name: name ?? String(stages.length), from, instructions: [] })
    } else if (stages.length === 0 && keyword === 'ARG') {
      const [k, v] = args.split('=')
      globalArgs[k] = v
    } else {
      stages.at(-1)!.instructions.push({ keyword, args })
    }
  }
  return { stages, globalArgs }
}

const { stages, globalArgs } = dockerStages()
const stage = (name: string) => stages.find((s) => s.name === name)!
const lastOf = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword).at(-1)?.args
/** ENV instructions of a stage and its parents, later ones winning. */
function envChain (name: string): Record<string, string> {
  const s = stage(name)
  const parent = stages.some((p) => p.name === s.from) ? envChain(s.from) : {}
  const own: Record<string, string> = {}
  for (const i of s.instructions.filter((i) => i.keyword === 'ENV')) {
    for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) own[m[1]] = m[2]
  }
  return { ...parent, ...own }
}
const chainHas = (name: string, keyword: string): string | undefined => {
  const s = stage(name)
  return lastOf(s, keyword) ?? (stages.some((p) => p.name === s.from) ? chainHas(s.from, keyword) : undefined)
}

t.test('the Dockerfile passes dockerfile-utils validation', async (t) => {
  const diagnostics = lintDockerfile(readRepo('infra/Dockerfile'))
  t.same(diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`), [])
})

t.test('multi-stage build: Node 24 slim, the pinned pnpm, a stage per process', async (t) => {
  t.same(stages.map((s) => s.name), ['base', 'build', 'runtime', ...APPS])
  t.match(globalArgs.NODE_IMAGE, /^node:24(\.\d+)*-(\w+-)?slim$/, 'a Node 24 slim base')
  t.equal(stage('base').from, '$' + '{NODE_IMAGE}', 'the build tools on the NODE_IMAGE build arg')
  t.equal(stage('runtime').from, '$' + '{NODE_IMAGE}', 'the images that run start again from NODE_IMAGE: no pnpm, no build-time CA certificates')
  t.notMatch(readRepo('infra/Dockerfile'), /^#\s*syntax=/m, 'no syntax directive (BuildKit would fetch the frontend from a registry)')
  const buildCopies = stage('build').instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args.split(' ')[0])
  t.notOk(buildCopies.includes('.'), 'the build stage copies packages by name, never the whole context')
  for (const dir of ['packages', 'services', 'gateway', 'ops']) t.ok(buildCopies.includes(dir), `the build stage copies ${dir}/`)
  t.notOk(buildCopies.some((c) => /^(e2e|bench)\b/.test(c)), 'no test or benchmark package reaches the build (pnpm deploy cannot trip on their workspace links)')
  const pinned = JSON.parse(readRepo('package.json')).packageManager
  t.equal(`pnpm@${globalArgs.PNPM_VERSION}`, pinned, 'the pnpm version of package.json packageManager')
  t.ok(stage('base').instructions.some((i) => i.keyword === 'RUN' && /npm install --global "?pnpm@\$\{PNPM_VERSION\}/.test(i.args)), 'pnpm from npm, not corepack')
  const build = stage('build').instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join(' && ')
  t.match(build, /pnpm install --frozen-lockfile/, 'the lockfile decides')
  for (const app of APPS) {
    const pkg = JSON.parse(readRepo(APP_DIR[app], 'package.json')).name
    t.match(build, new RegExp(`pnpm --filter ${pkg} deploy --legacy --prod /out/${APP_DIR[app]}(\\s|$)`), `${app}: production dependencies only`)
  }
})

t.test('each image: non-root, health-checked, started like outside containers', async (t) => {
  const user = chainHas('runtime', 'USER')
  t.ok(user && !/^(root|0)(:|$)/.test(user), `runs as a non-root user (${user})`)
  t.equal(chainHas('runtime', 'HEALTHCHECK')?.replace(/^.*CMD /, ''), '["node", "/app/healthcheck.mjs"]', 'HEALTHCHECK with node (no curl in slim)')
  t.ok(stage('build').instructions.some((i) => i.keyword === 'RUN' && /cp infra\/docker\/healthcheck\.mjs \/out\/healthcheck\.mjs/.test(i.args)))
  for (const app of APPS) {
    const s = stage(app)
    t.equal(s.from, 'runtime', `${app} builds on the runtime stage`)
    const env = envChain(app)
    t.equal(env.HOST, '0.0.0.0', `${app}: HOST=0.0.0.0`)
    t.equal(env.NODE_ENV, 'production', `${app}: NODE_ENV=production`)
    t.equal(Number(env.PORT), schemas[app].port, `${app}: PORT is its default`)
    t.equal(lastOf(s, 'EXPOSE'), String(schemas[app].port), `${app}: EXPOSE ${schemas[app].port}`)
    t.ok(s.instructions.some((i) => i.keyword === 'COPY' && i.args === `--from=build /out/${APP_DIR[app]} /app/${APP_DIR[app]}`), `${app}: its deployed package at /app/${APP_DIR[app]}`)
    t.equal(lastOf(s, 'WORKDIR'), `/app/${APP_DIR[app]}`, `${app}: runs in its package directory`)
    t.match(env.PATH, new RegExp(`^/app/${APP_DIR[app]}/node_modules/\\.bin:`), `${app}: its own bin directory first on PATH`)
    const start = JSON.parse(readRepo(APP_DIR[app], 'package.json')).scripts.start as string
    t.same(JSON.parse(lastOf(s, 'CMD') ?? 'null'), start.replace(/^exec /, '').split(' '), `${app}: CMD is its \`start\` script (${start}), run without pnpm in between`)
  }
  // `start` runs the bundle its `prestart` builds; in the image the build stage builds it, in the deployed tree.
  const bundle = stage('build').instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).find((a) => /node scripts\/build\.mjs --root \/out /.test(a))
  t.ok(bundle, 'the build stage bundles the deployed packages in place')
  for (const app of APPS) t.match(bundle ?? '', new RegExp(`\\b${app}\\b`), `${app}: its dist/ is built`)
  const billing = stage('billing').instructions
  t.ok(billing.some((i) => i.keyword === 'COPY' && i.args === '--from=build /out/ops /app/ops'), 'billing carries the ops commands')
})

t.test('.dockerignore keeps secrets and installs out, and what the build copies in', async (t) => {
  const ig = dockerignore({ ignorecase: false }).add(readRepo('.dockerignore'))
  for (const p of ['node_modules/x/index.js', 'services/chat/node_modules/x/index.js', 'gateway/dist/server.mjs', '.env', '.keys/jwt-ed25519.pem', '.git/HEAD', 'services/chat/test/a.test.ts']) {
    t.ok(ig.ignores(p), `${p} is not sent to the builder`)
  }
  const needed = ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', '.npmrc', 'infra/docker/healthcheck.mjs', 'scripts/build.mjs', 'ops/package.json', 'packages/platform/src/index.ts', 'packages/contracts/package.json']
  for (const app of APPS) needed.push(`${APP_DIR[app]}/package.json`, `${APP_DIR[app]}/src/server.ts`)
  for (const p of needed) t.notOk(ig.ignores(p), `${p} reaches the build`)
})

t.test('the image health check exits 0 only on a 200 from /healthz', async (t) => {
  let status = 200
  const server: Server = createServer((req, res) => { res.statusCode = req.url === '/healthz' ? status : 404; res.end('{}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = String((server.address() as { port: number }).port)
  const check = (p: string) => new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [repoPath('infra/docker/healthcheck.mjs')], { env: { ...process.env, PORT: p }, stdio: 'ignore' })
    child.on('exit', (code) => resolve(code))
  })
  t.equal(await check(port), 0, 'healthy')
  status = 503
  t.equal(await check(port), 1, 'a 503 is unhealthy')
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  t.equal(await check(port), 1, 'nothing listening is unhealthy')
})

// --- Kubernetes ---------------------------------------------------------------------------------------

const kustomization = loadYaml('infra/k8s/base/kustomization.yaml')
const manifests: any[] = kustomization.resources.flatMap((file: string) => loadYamlDocuments('infra/k8s/base', file).map((doc) => ({ ...doc, file })))
const byKind = (kind: string) => manifests.filter((m) => m.kind === kind)
const named = (kind: string, name: string) => byKind(kind).find((m) => m.metadata.name === name)

const MODEL_MODULES: Record<string, string> = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'policy/v1': 'kubernetes-models/policy/v1',
  'batch/v1': 'kubernetes-models/batch/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1'
}

t.test('every manifest validates against the Kubernetes API schema (kubernetes-models)', async (t) => {
  const files = readdirSync(repoPath('infra/k8s/base')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  t.same(files.sort(), [...kustomization.resources].sort(), 'every manifest file is in the kustomization')
  for (const { file, ...doc } of manifests) {
    const modulePath = MODEL_MODULES[doc.apiVersion]
    t.ok(modulePath, `${file}: ${doc.apiVersion} is a stable API`)
    if (!modulePath) continue
    const Model = (await import(modulePath))[doc.kind]
    t.ok(Model, `${file}: ${doc.apiVersion} ${doc.kind} exists`)
    t.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind}/${doc.metadata.name} is valid`)
  }
  t.same(manifests.filter((m) => m.metadata.namespace).map((m) => m.metadata.name), [], 'the namespace comes from the kustomization')
})

t.test('kustomize renders the base', async (t) => {
  const res = spawnSync('kubectl', ['kustomize', repoPath('infra/k8s')], { encoding: 'utf8' })
  if (res.error) return t.skip('kubectl is not installed here', () => {})
  t.equal(res.status, 0, res.stderr)
  const { parseAllDocuments } = await import('yaml')
  const rendered = parseAllDocuments(res.stdout).map((d) => d.toJS())
  t.equal(rendered.length, manifests.length, 'every resource is rendered')
  for (const r of rendered) {
    if (r.kind !== 'Namespace') t.equal(r.metadata.namespace, kustomization.namespace, `${r.kind}/${r.metadata.name} is namespaced`)
  }
})

t.test('deployments: probes, resources, non-root, config from the ConfigMap and Secret', async (t) => {
  const config = named('ConfigMap', 'chat-platform-config')
  const secret = named('Secret', 'chat-platform-secrets')
  t.ok(config && secret)
  const secretKeys = new Set(Object.keys({ ...secret.stringData, ...secret.data }))
  const allKeys = new Set(APPS.flatMap((a) => [...schemas[a].keys]))
  t.same(Object.keys(config.data).filter((k) => !allKeys.has(k)), [], 'every ConfigMap key is read by some process')
  t.equal(config.data.STREAM_REPLICAS, '3', 'streams are replicated on the 3-node JetStream cluster')
  t.equal(config.data.NODE_ENV, 'production')
  t.equal(config.data.HOST, '0.0.0.0')

  for (const app of APPS) {
    const d = named('Deployment', app)
    t.ok(d, `${app} has a Deployment`)
    const pod = d.spec.template.spec
    const [c] = pod.containers
    const schema: EnvSchema = schemas[app]
    t.equal(c.image, `chat-platform/${app}`)
    t.equal(c.ports[0].containerPort, schema.port, `${app} container port`)
    t.equal(c.readinessProbe.httpGet.path, '/readyz', `${app} readiness: /readyz`)
    t.equal(c.livenessProbe.httpGet.path, '/healthz', `${app} liveness: /healthz`)
    t.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, `${app} has resource requests and a memory limit`)
    t.equal(pod.securityContext.runAsNonRoot, true, `${app} runs as non-root`)
    t.not(pod.securityContext.runAsUser, 0)
    t.equal(c.securityContext.allowPrivilegeEscalation, false)
    t.equal(c.securityContext.readOnlyRootFilesystem, true)
    t.ok(pod.volumes.some((v: any) => v.emptyDir) && c.volumeMounts.some((m: any) => m.mountPath === '/tmp'), `${app} has a writable /tmp`)
    t.ok(pod.terminationGracePeriodSeconds * 1000 > Number(config.data.SHUTDOWN_GRACE_MS), `${app} is given longer than its drain to stop`)
    t.same(c.envFrom, [{ configMapRef: { name: 'chat-platform-config' } }])
    const names = c.env.map((e: any) => e.name)
    t.same(names.filter((n: string) => !schema.keys.has(n)), [], `${app}: every env entry is a variable it reads`)
    for (const k of schema.required) t.ok(names.includes(k) || k in config.data, `${app}: required ${k} is set`)
    t.equal(c.env.find((e: any) => e.name === 'PORT')?.value, String(schema.port))
    for (const e of c.env.filter((e: any) => e.valueFrom?.secretKeyRef)) {
      t.equal(e.valueFrom.secretKeyRef.name, 'chat-platform-secrets')
      t.ok(secretKeys.has(e.valueFrom.secretKeyRef.key), `${app}: secret key ${e.valueFrom.secretKeyRef.key} exists`)
    }
    t.ok(names.includes('JWT_PUBLIC_KEY'), `${app} verifies tokens with the public key from the Secret`)
    if (schema.keys.has('DATABASE_URL')) t.ok(names.includes('DATABASE_URL'), `${app} gets its own DATABASE_URL`)
  }
  t.ok(named('Deployment', 'auth').spec.template.spec.containers[0].env.some((e: any) => e.name === 'JWT_PRIVATE_KEY'), 'auth signs')
})

t.test('services, autoscalers and disruption budgets', async (t) => {
  const config = named('ConfigMap', 'chat-platform-config')
  for (const app of APPS) {
    const svc = named('Service', app)
    const d = named('Deployment', app)
    t.ok(svc, `${app} has a Service`)
    t.same(svc.spec.selector, d.spec.selector.matchLabels, `${app} Service selects its pods`)
    t.match(d.spec.template.metadata.labels, d.spec.selector.matchLabels)
    t.equal(svc.spec.ports[0].port, schemas[app].port)
    t.equal(svc.spec.ports[0].targetPort, 'http')
    if (app === 'gateway') t.not(svc.spec.clusterIP, 'None', 'the gateway is a normal Service')
    else t.equal(svc.spec.clusterIP, 'None', `${app} is headless: the gateway round-robins over its pods`)
    const pdb = named('PodDisruptionBudget', app)
    t.ok(pdb, `${app} has a PodDisruptionBudget`)
    t.same(pdb.spec.selector.matchLabels, d.spec.selector.matchLabels)
  }
  for (const [key, app] of [['AUTH_URL', 'auth'], ['CHAT_URL', 'chat'], ['BILLING_URL', 'billing']] as const) {
    const url = new URL(config.data[key])
    t.equal(url.hostname, app)
    t.equal(Number(url.port), schemas[app].port, `${key} points at the ${app} Service`)
  }
  for (const app of ['chat', 'billing']) {
    const hpa = byKind('HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.name === app)
    t.ok(hpa, `${app} has an HPA`)
    t.equal(hpa.spec.scaleTargetRef.kind, 'Deployment')
    t.ok(hpa.spec.minReplicas >= 2, `${app} keeps at least two replicas`)
    t.equal(named('Deployment', app).spec.replicas, undefined, `${app}: the HPA owns the replica count`)
  }
})

t.test('the billing audit CronJob runs the ops command in the billing image', async (t) => {
  const job = named('CronJob', 'billing-audit')
  const [c] = job.spec.jobTemplate.spec.template.spec.containers
  t.equal(c.image, 'chat-platform/billing')
  t.equal(c.workingDir, '/app')
  t.same(c.command, ['node', '--enable-source-maps', 'ops/dist/cli.mjs', 'billing:audit'], 'the bundled ops CLI with plain node (no pnpm in the image)')
  t.equal(job.spec.jobTemplate.spec.template.spec.securityContext.runAsNonRoot, true)
  t.ok(c.env.some((e: any) => e.name === 'DATABASE_URL' && e.valueFrom.secretKeyRef.key === 'BILLING_DATABASE_URL'), 'as the billing role')
  t.ok(existsSync(repoPath('infra/k8s/README.md')), 'with a README on NATS and Postgres')
})
