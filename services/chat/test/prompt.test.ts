// Prompt building: system prompt and the new message always; history newest-first while it fits.
import t from 'tap'
import { buildPrompt, fixedPromptTokens } from '../src/prompt.ts'
import { createTokenizer } from '@chat-platform/tokenizer'

t.test('buildPrompt', async (t) => {
  const tokenizer = await createTokenizer('gpt-4o-mini')
  const h = (role: 'user' | 'assistant', content: string) => ({ role, content, content_tokens: tokenizer.count(content) })
  const historyNewestFirst = [h('assistant', 'four'), h('user', 'three'), h('assistant', 'two'), h('user', 'one')]
  const base = { systemPrompt: 'sys', content: 'now', tokenizer }
  const minimal = tokenizer.countPrompt([{ role: 'system', content: 'sys' }, { role: 'user', content: 'now' }])

  const all = buildPrompt({ ...base, historyNewestFirst, budget: 10_000 })
  t.same(all.messages.map((m) => m.content), ['sys', 'one', 'two', 'three', 'four', 'now'])
  t.equal(all.tokens, tokenizer.countPrompt(all.messages), 'stored counts add up to a real count')
  t.equal(all.historyUsed, 4)

  const two = buildPrompt({ ...base, historyNewestFirst, budget: minimal + 2 * 5 })
  t.same(two.messages.map((m) => m.content), ['sys', 'three', 'four', 'now'], 'the newest turns, in order')
  t.ok(two.tokens <= minimal + 10)

  const none = buildPrompt({ ...base, historyNewestFirst, budget: 1 })
  t.same(none.messages.map((m) => m.content), ['sys', 'now'], 'the new message goes even over budget')

  const gap = buildPrompt({ ...base, historyNewestFirst: [h('assistant', 'short'), h('user', 'a much longer message '.repeat(20)), h('assistant', 'x')], budget: minimal + 6 })
  t.same(gap.messages.map((m) => m.content), ['sys', 'short', 'now'], 'stops at the first turn that does not fit (no gaps)')

  t.same(buildPrompt({ ...base, systemPrompt: '', historyNewestFirst: [], budget: 100 }).messages, [{ role: 'user', content: 'now' }])
})

t.test('fixedPromptTokens: what the system prompt and the new message cost, the part send-message checks against the budget', async (t) => {
  const tokenizer = await createTokenizer('gpt-4o-mini')
  for (const [systemPrompt, content] of [['sys', 'now'], ['', 'just the message'], ['You are terse. '.repeat(30), 'long '.repeat(200)]]) {
    const fixed = fixedPromptTokens({ systemPrompt, content, tokenizer })
    const messages = [...(systemPrompt ? [{ role: 'system' as const, content: systemPrompt }] : []), { role: 'user' as const, content }]
    t.equal(fixed.tokens, tokenizer.countPrompt(messages), 'a real count of the prompt without history')
    t.equal(fixed.contentTokens, tokenizer.count(content))
    t.equal(buildPrompt({ systemPrompt, content, tokenizer, historyNewestFirst: [], budget: 1_000_000 }).tokens, fixed.tokens, 'the same count buildPrompt starts from')
  }
  t.equal(fixedPromptTokens({ systemPrompt: 'sys', content: 'now', contentTokens: 50, tokenizer }).tokens, fixedPromptTokens({ systemPrompt: 'sys', content: 'now', tokenizer }).tokens - 1 + 50, 'a count the caller has is reused')
})

t.test('the tokenizer stays fast and close on pathological input', async (t) => {
  const tokenizer = await createTokenizer('gpt-4o-mini')
  t.equal(tokenizer.count('hello world'), 2)
  t.equal(tokenizer.count('<|endoftext|>') > 1, true, 'special tokens are plain text')
  const n = tokenizer.count('你好世界我们今天'.repeat(2000))
  t.ok(n > 4000 && n < 16_000, `16,000 unpunctuated CJK characters counted (${n})`)
  t.equal((await createTokenizer('gpt-4')).encoding, 'cl100k_base')
  t.equal((await createTokenizer('some-other-model')).encoding, 'o200k_base')
})
