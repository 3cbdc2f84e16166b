// The compact tokenizer counts exactly what js-tiktoken counted (o200k_base and cl100k_base), long-run guard included.
import t from 'tap'
import { Tiktoken } from 'js-tiktoken/lite'
import o200k from 'js-tiktoken/ranks/o200k_base'
import cl100k from 'js-tiktoken/ranks/cl100k_base'
import { createTokenizer, encodingForModel } from '../src/tokenizer.ts'

// The tokenizer as it was: js-tiktoken with special-token text as plain text, behind the same long-run guard.
function referenceCount (enc: Tiktoken): (text: string) => number {
  const exact = (text: string) => text ? enc.encode(text, [], []).length : 0
  return (text) => {
    let n = 0
    let last = 0
    for (const m of text.matchAll(/[\p{L}\p{M}]{25,}|[^\s\p{L}\p{N}]{25,}|\s{25,}/gu)) {
      n += exact(text.slice(last, m.index))
      const chars = Array.from(m[0])
      for (let i = 0; i < chars.length; i += 16) n += exact(chars.slice(i, i + 16).join(''))
      last = m.index + m[0].length
    }
    return n + exact(text.slice(last))
  }
}

const english = 'The quick brown fox jumps over the lazy dog. It\'s well-known; we\'ll use it, they\'ve said, I\'d agree. DON\'T SHOUT: "Hello, World!" 1234567 3.14159 — naïve café résumé coöperate.\n'
const chinese = '你好，世界！今天天气很好，我们去公园散步吧。机器学习是人工智能的一个分支，它使计算机能够从数据中学习。日本語のテキストも少し。한국어 텍스트도 조금.\n'
const code = 'export async function main (argv: string[]): Promise<number> {\n  const x = argv.map((a) => a.trim()).filter(Boolean)\n\tif (x.length > 0) { console.log(`got`, x.length) }\n    return 0 // done\r\n}\n\n\n    \n'
const emoji = 'Great job 👍🏽👨‍👩‍👧‍👦 🇫🇷 ✨🔥 ❤️ 😀😃😄 — ok? ¿Qué tal? Привет мир! مرحبا بالعالم שלום עולם हिन्दी 𝔘𝔫𝔦 𠀀\n'
const fixed = [
  '', ' ', 'a', 'hello world', english, chinese, code, emoji, (english + chinese + code + emoji).repeat(4),
  '<|endoftext|>', 'before<|endoftext|>after <|endofprompt|> <|fim_prefix|><|im_start|>user<|im_end|>',
  '  \t \n \r\n  x  ', ' '.repeat(24) + 'x', ' '.repeat(25) + 'x', ' '.repeat(300), '\n'.repeat(40), '\t\t\t \n\n\r\n'.repeat(20),
  'a'.repeat(24), 'a'.repeat(25), 'a'.repeat(1000), '!'.repeat(33), '=-'.repeat(60), '1234567890'.repeat(12),
  '你好世界我们今天'.repeat(500), 'Supercalifragilisticexpialidocious antidisestablishmentarianism', 'e\u0301'.repeat(40),
  '\ufeff\ufeffabc \ufeff', 'x\u0085y \u00a0\u2003\u3000\u2028z', 'lone \ud800 surrogates \udc00\ud83d', '\u0000\u007f\u0080\ufffd',
  "don't WON'T I'M you'RE we'Ve they'LL she'd", 'https://example.com/a/b?c=d&e=f#g', '{"key": [1, 2, 3], "nested": {"x": null}}'
]

// Random strings from small alphabets of awkward pieces, so that runs, contractions and mixed scripts meet.
const palette = [
  'a', 'z', 'A', 'Z', 'é', 'ß', 'İ', 'ǅ', 'ʰ', '\u0301', 'ー', '你', '好', '界', 'の', 'ア', '한', 'ж', 'Ж', 'ع', 'ש', 'ह', 'ि',
  '0', '9', '٣', '²', '½', 'Ⅻ', ' ', ' ', '  ', '\t', '\n', '\r', '\r\n', '\u00a0', '\u3000', '\ufeff', '\u200b', '\u2028', '\u0085', '\u000b',
  "'", "'s", "'S", "'ll", "'LL", "'re", "'Ve", "'d", '’', '"', '.', ',', '!', '?', '/', '\\', '-', '_', '(', '{', '<', '>', '|', '=', '#', '$', '`',
  '<|endoftext|>', '<|endofprompt|>', '👍', '🏽', '\u200d', '🇫', '❤', '\ufe0f', '𝔘', '\ud800', '\u0000', '\u0080',
  'the', ' the', 'The', 'ing', 'HTTP', 'const', '机器学习'
]
function randomTexts (count: number): string[] {
  let seed = 20240601
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff
    return seed / 0x80000000
  }
  return Array.from({ length: count }, () => {
    const alphabet = Array.from({ length: 2 + Math.floor(random() * 8) }, () => palette[Math.floor(random() * palette.length)])
    const length = 1 + Math.floor(random() ** 2 * 60)
    return Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('')
  })
}
const corpus = [...fixed, ...randomTexts(3000)]

for (const [model, ranks, encoding] of [['gpt-4o-mini', o200k, 'o200k_base'], ['gpt-4', cl100k, 'cl100k_base']] as const) {
  t.test(`${encoding} counts equal js-tiktoken's`, async (t) => {
    const tokenizer = await createTokenizer(model)
    t.equal(tokenizer.encoding, encoding)
    t.equal(encodingForModel(model), encoding)
    const reference = referenceCount(new Tiktoken(ranks))
    const drifted = corpus.filter((text) => tokenizer.count(text) !== reference(text))
    t.same(drifted.slice(0, 5).map((text) => ({ text, count: tokenizer.count(text), reference: reference(text) })), [], `all ${corpus.length} texts`)
    t.equal(tokenizer.count('hello world'), 2)
    t.equal(tokenizer.count(''), 0)
    const messages = [{ role: 'system' as const, content: english }, { role: 'user' as const, content: chinese }, { role: 'assistant' as const, content: '' }]
    t.equal(tokenizer.countPrompt(messages), 3 + messages.reduce((n, m) => n + 3 + reference(m.role) + reference(m.content), 0))
  })
}

t.test('one table per encoding, shared by every tokenizer', async (t) => {
  const [a, b] = await Promise.all([createTokenizer('gpt-4o'), createTokenizer('unknown-model')])
  t.equal(a.encoding, 'o200k_base')
  t.equal(b.encoding, 'o200k_base')
  t.equal(a.count(code), b.count(code))
})
