// Merging service documents: schemas with the same name but different shapes are renamed, references follow.
import t from 'tap'
import { mergeOpenApi, type OpenApiDocument } from '../src/openapi-merge.ts'

const doc = (paths: OpenApiDocument['paths'], schemas: Record<string, unknown>): OpenApiDocument =>
  ({ openapi: '3.0.3', info: { title: 's', version: '1' }, paths, components: { schemas } })

t.test('conflicting component names are prefixed with the service; identical ones are shared', async (t) => {
  const ref = (name: string) => ({ content: { 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } } })
  const { document } = mergeOpenApi({
    auth: doc({ '/api/auth/verify': { get: { responses: { 200: ref('User') } } } }, { User: { type: 'object', properties: { id: { type: 'integer' } } }, Same: { type: 'string' } }),
    chat: doc({ '/api/sessions': { get: { responses: { 200: ref('User') } } } }, { User: { type: 'object', properties: { name: { type: 'string' } } }, Same: { type: 'string' } })
  })
  t.ok(document.components.schemas.User.properties.id)
  t.ok(document.components.schemas.chat_User.properties.name)
  t.equal(document.paths['/api/sessions'].get.responses['200'].content['application/json'].schema.$ref, '#/components/schemas/chat_User')
  t.equal(document.paths['/api/auth/verify'].get.responses['200'].content['application/json'].schema.$ref, '#/components/schemas/User')
  t.ok(document.components.schemas.Same)
  t.notOk(document.components.schemas.chat_Same)
  t.same(document.paths['/api/sessions'].get.security, [{ bearer: [] }])
  t.ok(document.paths['/api/sessions'].get.responses['401'], 'authenticated routes document the 401')
  t.equal(document.paths['/api/sessions'].get['x-service'], 'chat')
})

t.test('public routes get no security requirement and no 401', async (t) => {
  const { document } = mergeOpenApi({ auth: doc({ '/api/auth/register': { post: { responses: { 200: { description: 'ok' } } } } }, {}) })
  const op = document.paths['/api/auth/register'].post
  t.same(op.security, [])
  t.notOk(op.responses['401'])
  t.ok(op.responses['429'])
})
