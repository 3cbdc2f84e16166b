// The k8s NetworkPolicies evaluated as Kubernetes would for each pair of pods, and the production overlay rendered by
// `kubectl kustomize` (with the example secrets) and checked against the API schemas.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { loadYaml, loadYamlDocuments, readRepo, repoPath } from './helpers.ts'

const base = loadYaml('infra/k8s/base/kustomization.yaml')
const policies: any[] = loadYamlDocuments('infra/k8s/base', 'network-policies.yaml')

// --- NetworkPolicy semantics (networking.k8s.io/v1) -----------------------------------------------------

interface Pod { labels: Record<string, string>, namespace?: string, nsLabels?: Record<string, string> }
interface Selector { matchLabels?: Record<string, string>, matchExpressions?: { key: string, operator: string, values?: string[] }[] }

function selects (sel: Selector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels
    if (e.operator === 'In' && !(has && e.values!.includes(labels[e.key]))) return false
    if (e.operator === 'NotIn' && has && e.values!.includes(labels[e.key])) return false
    if (e.operator === 'Exists' && !has) return false
    if (e.operator === 'DoesNotExist' && has) return false
  }
  return true
}

const NS = base.namespace as string
const inNs = (pod: Pod) => (pod.namespace ?? NS) === NS

/** A peer of a rule (`from` / `to` entry) matches a pod; `external` is an address outside the cluster. */
function peerMatches (peer: any, pod: Pod | 'external'): boolean {
  if (peer.ipBlock) return pod === 'external'
  if (pod === 'external') return false
  if (peer.namespaceSelector) return selects(peer.namespaceSelector, pod.nsLabels ?? {}) && selects(peer.podSelector, pod.labels)
  return inNs(pod) && selects(peer.podSelector, pod.labels)
}
const portMatches = (rule: any, port: number, protocol = 'TCP') => !rule.ports || rule.ports.some((p: any) => p.port === port && (p.protocol ?? 'TCP') === protocol)

/** Whether `from` may open a connection to `to` on `port`: allowed by the egress policies of one and the ingress ones of the other. */
function allowed (from: Pod | 'external', to: Pod | 'external', port: number, protocol = 'TCP'): boolean {
  const check = (pod: Pod, type: 'Ingress' | 'Egress', peer: Pod | 'external') => {
    const applying = inNs(pod) ? policies.filter((p) => p.spec.policyTypes.includes(type) && selects(p.spec.podSelector, pod.labels)) : []
    if (applying.length === 0) return true
    return applying.some((p) => (p.spec[type === 'Ingress' ? 'ingress' : 'egress'] ?? []).some((rule: any) => {
      const peers = rule[type === 'Ingress' ? 'from' : 'to']
      return (!peers || peers.some((x: any) => peerMatches(x, peer))) && portMatches(rule, port, protocol)
    }))
  }
  return (from === 'external' || check(from, 'Egress', to)) && (to === 'external' || check(to, 'Ingress', from))
}

const pod = (name: string): Pod => ({ labels: { 'app.kubernetes.io/name': name } })
const gateway = pod('gateway')
const [auth, chat, billing, audit] = ['auth', 'chat', 'billing', 'billing-audit'].map(pod)
const nats = pod('nats')
const redis = pod('redis')
const postgres: Pod = { labels: { 'cnpg.io/cluster': 'postgres' } }
const stranger = pod('something-else')
const otherNamespace: Pod = { labels: { 'app.kubernetes.io/name': 'gateway' }, namespace: 'elsewhere', nsLabels: { 'kubernetes.io/metadata.name': 'elsewhere' } }
const dns: Pod = { labels: { 'k8s-app': 'kube-dns' }, namespace: 'kube-system', nsLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }
const PORTS = { auth: 3001, chat: 3002, billing: 3003 }

t.test('every policy is a valid NetworkPolicy of the base', async (t) => {
  const { NetworkPolicy } = await import('kubernetes-models/networking.k8s.io/v1')
  for (const p of policies) t.doesNotThrow(() => new NetworkPolicy(p).validate(), `${p.metadata.name} is valid`)
  t.ok(base.resources.includes('network-policies.yaml'), 'in the base kustomization')
  const deny = policies.find((p) => p.metadata.name === 'default-deny-ingress')
  t.same(deny.spec, { podSelector: {}, policyTypes: ['Ingress'] }, 'ingress is denied to every pod unless allowed')
})

t.test('the gateway is reachable from anywhere on 8080, and on nothing else', async (t) => {
  t.ok(allowed('external', gateway, 8080), 'from outside the cluster')
  t.ok(allowed(otherNamespace, gateway, 8080), 'from another namespace (the ingress controller)')
  t.notOk(allowed('external', gateway, 9229), 'not on another port')
})

t.test('only the gateway (and the platform itself) reaches auth, chat and billing', async (t) => {
  for (const [name, svc] of [['auth', auth], ['chat', chat], ['billing', billing]] as const) {
    t.ok(allowed(gateway, svc, PORTS[name]), `gateway → ${name}`)
    t.notOk(allowed('external', svc, PORTS[name]), `outside → ${name}: denied`)
    t.notOk(allowed(stranger, svc, PORTS[name]), `another pod of the namespace → ${name}: denied`)
    t.notOk(allowed(otherNamespace, svc, PORTS[name]), `another namespace → ${name}: denied`)
    t.notOk(allowed(nats, svc, PORTS[name]), `nats → ${name}: denied`)
  }
  t.ok(allowed(billing, auth, 3001), 'billing → auth (/internal/users)')
  t.ok(allowed(audit, chat, 3002), 'the ops Jobs → chat (usage:reconcile)')
})

t.test('only the services reach NATS, Postgres and Redis', async (t) => {
  for (const svc of [auth, chat, billing, audit]) {
    const name = svc.labels['app.kubernetes.io/name']
    t.ok(allowed(svc, nats, 4222), `${name} → NATS`)
    t.ok(allowed(svc, postgres, 5432), `${name} → Postgres`)
    t.ok(allowed(svc, redis, 6379), `${name} → Redis`)
  }
  t.ok(allowed(gateway, nats, 4222), 'gateway → NATS (its read-only user follows AUTH_REVOCATIONS)')
  t.notOk(allowed(gateway, postgres, 5432), 'gateway → Postgres: denied')
  t.ok(allowed(gateway, redis, 6379), 'gateway → Redis (its shared rate limits)')
  for (const [what, target, port] of [['NATS', nats, 4222], ['Postgres', postgres, 5432], ['Redis', redis, 6379]] as const) {
    t.notOk(allowed('external', target, port), `outside → ${what}: denied`)
    t.notOk(allowed(stranger, target, port), `another pod → ${what}: denied`)
    t.notOk(allowed(otherNamespace, target, port), `another namespace → ${what}: denied`)
  }
  t.ok(allowed(nats, nats, 6222), 'the NATS nodes route to each other')
  t.ok(allowed(postgres, postgres, 5432), 'Postgres instances replicate')
})

t.test('the platform\'s pods: DNS, the namespace, HTTPS outside; nothing else out', async (t) => {
  for (const p of [gateway, auth, chat, billing, audit]) {
    const name = p.labels['app.kubernetes.io/name']
    t.ok(allowed(p, dns, 53, 'UDP') && allowed(p, dns, 53, 'TCP'), `${name} resolves names`)
    t.notOk(allowed(p, otherNamespace, 8080), `${name} → another namespace: denied`)
    t.notOk(allowed(p, 'external', 80), `${name} → plain HTTP outside: denied`)
  }
  t.ok(allowed(chat, 'external', 443), 'chat → the LLM provider over HTTPS')
  const egress = policies.find((p) => p.metadata.name === 'platform-egress')
  const block = egress.spec.egress.find((r: any) => r.to.some((x: any) => x.ipBlock)).to[0].ipBlock
  t.same(block.except.slice(0, 3), ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'], 'private ranges are not "outside"')
})

// --- The production overlay ---------------------------------------------------------------------------

const MODELS: Record<string, string> = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'policy/v1': 'kubernetes-models/policy/v1',
  'batch/v1': 'kubernetes-models/batch/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1'
}

t.test('overlays/prod renders with kubectl kustomize and every resource is valid', async (t) => {
  if (spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).error) return t.skip('kubectl is not installed here', () => {})
  // A copy with the example secrets where the real ones go (secrets/ is git-ignored).
  const dir = mkdtempSync(join(tmpdir(), 'k8s-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(repoPath('infra/k8s'), join(dir, 'k8s'), { recursive: true })
  const secrets = join(dir, 'k8s/overlays/prod/secrets')
  rmSync(secrets, { recursive: true, force: true })
  cpSync(repoPath('infra/k8s/overlays/prod/secrets.example'), secrets, { recursive: true })
  writeFileSync(join(secrets, 'jwt-ed25519.pem'), 'PRIVATE PEM')
  writeFileSync(join(secrets, 'jwt-ed25519.pub.pem'), 'PUBLIC PEM')
  const res = spawnSync('kubectl', ['kustomize', join(dir, 'k8s/overlays/prod')], { encoding: 'utf8' })
  t.equal(res.status, 0, res.stderr)
  const docs: any[] = parseAllDocuments(res.stdout).map((d) => d.toJS())
  // kustomize folds long base64 values over lines (a block scalar): the API server joins them; so does the check.
  for (const d of docs) if (d.kind === 'Secret' && d.data) for (const k of Object.keys(d.data)) d.data[k] = d.data[k].replace(/\s/g, '')
  const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name)

  for (const d of docs) {
    const Model = (await import(MODELS[d.apiVersion]))[d.kind]
    t.doesNotThrow(() => new Model(d).validate(), `${d.kind}/${d.metadata.name} is valid`)
    if (d.kind !== 'Namespace') t.equal(d.metadata.namespace, NS, `${d.kind}/${d.metadata.name} in ${NS}`)
  }
  const baseRendered = spawnSync('kubectl', ['kustomize', repoPath('infra/k8s')], { encoding: 'utf8' })
  t.equal(docs.length, parseAllDocuments(baseRendered.stdout).length + 1, 'the base\'s resources and the nats-users Secret')
  t.equal(docs.filter((d) => d.kind === 'NetworkPolicy').length, policies.length, 'with the NetworkPolicies')

  for (const app of ['auth', 'chat', 'billing', 'gateway']) {
    const [c] = find('Deployment', app).spec.template.spec.containers
    t.match(c.image, new RegExp(`^registry\\.example\\.com/chat-platform/${app}:\\d+\\.\\d+\\.\\d+$`), `${app}: a pinned image from the registry`)
    t.ok(c.resources.requests.cpu && c.resources.limits.memory, `${app}: sized`)
  }
  t.match(find('CronJob', 'billing-audit').spec.jobTemplate.spec.template.spec.containers[0].image, /^registry\.example\.com\/chat-platform\/billing:/)
  t.equal(find('Deployment', 'auth').spec.replicas, 3)
  t.equal(find('Deployment', 'gateway').spec.replicas, 3)
  t.equal(find('HorizontalPodAutoscaler', 'chat').spec.minReplicas, 3)
  t.equal(find('ConfigMap', 'chat-platform-config').data.STREAM_REPLICAS, '3', 'JetStream streams at 3 replicas')

  // The Secret is replaced whole: exactly the base's keys, from the files, no placeholder left.
  const secret = find('Secret', 'chat-platform-secrets')
  const baseSecret = loadYamlDocuments('infra/k8s/base', 'secret.yaml')[0]
  t.notOk(secret.stringData, 'no stringData left from the base (it would win over data)')
  t.same(Object.keys(secret.data).sort(), Object.keys({ ...baseSecret.stringData, ...baseSecret.data }).sort(), 'the keys the base declares')
  t.equal(Buffer.from(secret.data.JWT_PUBLIC_KEY, 'base64').toString(), 'PUBLIC PEM', 'the key pair from secrets/')
  t.notMatch(Object.values<string>(secret.data).map((v) => Buffer.from(v, 'base64').toString()).join('\n'), /REPLACE_ME/, 'no placeholder')
  const users = find('Secret', 'nats-users')
  const passwords = [...readRepo('infra/nats/users.conf').matchAll(/password: \$(\w+)/g)].map((m) => m[1]).sort()
  t.same(Object.keys(users.data).sort(), passwords, 'nats-users holds every password users.conf reads')
  t.same(readdirSync(repoPath('infra/k8s/overlays/prod/secrets.example')).sort(), ['app.env', 'nats-users.env'])
  t.match(readRepo('infra/k8s/overlays/prod/.gitignore'), /^secrets\/$/m, 'the real secrets stay out of git')
})
