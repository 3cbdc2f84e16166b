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

t.test('a service\'s own error responses are documented as application/problem+json with the shared Problem', async (t) => {
  const inlineProblem = { type: 'object', required: ['type', 'title', 'status', 'detail', 'code', 'request_id'], properties: { code: { type: 'string' } } }
  const { document } = mergeOpenApi({
    auth: doc({
      '/api/auth/email-login': {
        post: {
          responses: {
            200: { description: 'Default Response', content: { 'application/json': { schema: { type: 'object' } } } },
            401: { description: 'Default Response', content: { 'application/json': { schema: inlineProblem } } },
            409: { description: 'Taken', content: { 'application/json': { schema: inlineProblem } } },
            418: { description: 'Not a problem', content: { 'application/json': { schema: { type: 'string' } } } }
          }
        }
      }
    }, {})
  })
  const r = document.paths['/api/auth/email-login'].post.responses
  const problem = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } }
  t.same(r['401'], { description: 'Unauthorized: a problem whose `code` says which', content: problem })
  t.same(r['409'], { description: 'Taken', content: problem }, 'a description the service wrote is kept')
  t.same(r['200'].content, { 'application/json': { schema: { type: 'object' } } }, 'a success response is left alone')
  t.same(r['418'].content, { 'application/json': { schema: { type: 'string' } } }, 'an error body that is no problem is left alone')
  t.ok(document.components.schemas.Problem.required.includes('request_id'), 'the shared Problem is in the document')
})

t.test('public routes get no security requirement and no 401', async (t) => {
  const { document } = mergeOpenApi({ auth: doc({ '/api/auth/register': { post: { responses: { 200: { description: 'ok' } } } } }, {}) })
  const op = document.paths['/api/auth/register'].post
  t.same(op.security, [])
  t.notOk(op.responses['401'])
  t.ok(op.responses['429'])
})
