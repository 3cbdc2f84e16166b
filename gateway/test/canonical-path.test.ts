// checkPath: which request targets are canonical, which are refused as not canonical (404) and which as malformed (400).
import t from 'tap'
import { BAD_ESCAPE, CANONICAL, NOT_CANONICAL, checkPath } from '../src/canonical-path.ts'

t.test('canonical paths pass, whatever their query string', async (t) => {
  for (const url of [
    '/', '/healthz', '/metrics', '/docs', '/docs/', '/docs/json', '/docs/static/index.html',
    '/api/auth/register', '/api/sessions', '/api/sessions/12/messages', '/api/sessions/12/messages?limit=5&before_id=3',
    '/api/sessions/a.b', '/api/sessions/.hidden', '/api/sessions/x.', '/api/v1.2/a.b.c', "/api/x/7:x@y!$&'()*+,=~_-",
    '/api/sessions/%C3%A9', '/api/sessions/%c3%a9', '/api/sessions/%E4%BD%A0%E5%A5%BD',
    '/api/auth/register?x=../..', '/api/auth/register?x=%2e%2e%2F&y=%zz;z#f', '/api/sessions?', '/api/sessions?/./'
  ]) t.equal(checkPath(url), CANONICAL, url)
})

t.test('dot segments, literal or escaped in either case, and two dots in a row are not canonical', async (t) => {
  for (const url of [
    '/api/auth/./register', '/api/auth/../auth/register', '/api/auth/x/..', '/api/auth/.', '/.', '/..', '/./api/auth/register',
    '/api/auth/%2e/register', '/api/auth/%2E/register', '/api/auth/x/%2e%2e/register', '/api/auth/x/.%2e/register',
    '/api/auth/x/%2E./register', '/api/auth/%2e', '/api/admin/../auth/register', '/api/./admin/users',
    '/api/sessions/...', '/api/sessions/..x', '/api/sessions/x..', '/api/sessions/a..b/c'
  ]) t.equal(checkPath(url), NOT_CANONICAL, url)
})

t.test('empty segments and trailing slashes on API routes are not canonical', async (t) => {
  for (const url of ['//api/auth/register', '/api//auth/register', '/api/auth//register', '/api/auth/register/', '/api/sessions/', '/api/', '/api/sessions//?x', '/api/sessions/?limit=1', '/docs//json']) {
    t.equal(checkPath(url), NOT_CANONICAL, url)
  }
})

t.test('escaped ASCII (encoded slash, backslash, percent, letters) and characters outside the path set are not canonical', async (t) => {
  for (const url of [
    '/api/auth%2Fregister', '/api/auth%2fregister', '/api/auth/x%2F..%2Fregister', '/api/auth/%252e/register', '/api/auth/%72egister',
    '/api/auth/register%00', '/api/auth/%5C..%5Cregister', '/api/auth/register%3Bx', '/api/auth/register%20',
    '/api/auth\\register', '/api/auth/x/..\\register', '/api/auth/register;jsessionid=1', '/api/auth/register#frag',
    '/api/auth/register x', '/api/auth/"x"', '/api/auth/<x>', '/api/auth/{x}', '/api/auth/x|y', '/api/auth/x^y', '/api/auth/`x`',
    '/api/auth/[x]', '/api/auth/\u00e9', '/api/auth/\t', 'api/auth/register', '*', 'http://evil.example/api/auth/register', ''
  ]) t.equal(checkPath(url), NOT_CANONICAL, JSON.stringify(url))
})

t.test('a % without two hex digits is a malformed escape', async (t) => {
  for (const url of ['/api/%zz', '/api/sessions/%E0%A4%A', '/api/sessions/%', '/api/sessions/%4', '/api/sessions/%g1', '/api/sessions/%1g?x', '/api/%\u00e91']) {
    t.equal(checkPath(url), BAD_ESCAPE, JSON.stringify(url))
  }
})
