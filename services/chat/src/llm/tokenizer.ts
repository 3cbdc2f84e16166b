// The local tokenizer (js-tiktoken, encodings shipped in the package): prompt budgets and estimated usage.
import { Tiktoken, getEncodingNameForModel, type TiktokenModel } from 'js-tiktoken/lite'

export interface PromptMessage { role: 'system' | 'user' | 'assistant', content: string }

export interface Tokenizer {
  readonly encoding: string
  count: (text: string) => number
  /** Tokens one chat message costs in a prompt (OpenAI's accounting: 3 per message + role + content). */
  countMessage: (m: PromptMessage) => number
  /** Tokens of a whole prompt, including the 3 that prime the reply. */
  countPrompt: (messages: PromptMessage[]) => number
}

type EncodingName = 'o200k_base' | 'cl100k_base'

export function encodingForModel (model: string): EncodingName {
  try {
    const name = getEncodingNameForModel(model as TiktokenModel)
    if (name === 'cl100k_base' || name === 'o200k_base') return name
  } catch { /* not an OpenAI model name */ }
  // Unknown or older models: o200k_base is the closest general-purpose encoding we ship.
  return 'o200k_base'
}

/**
 * BPE time grows with the square of a piece's length, and a run of letters is one piece: 4,000 Chinese
 * characters without punctuation took 23 s in one call. Runs of more than 24 letters, symbols or spaces
 * (rare in real text) are counted in 16-character cuts, at most a token off per cut; the rest is exact.
 */
const LONG_RUN = /[\p{L}\p{M}]{25,}|[^\s\p{L}\p{M}\p{N}]{25,}|\s{25,}/gu
const CUT = 16

const cache = new Map<EncodingName, Promise<Tiktoken>>()

async function loadEncoding (name: EncodingName): Promise<Tiktoken> {
  let p = cache.get(name)
  if (!p) {
    p = (name === 'cl100k_base' ? import('js-tiktoken/ranks/cl100k_base') : import('js-tiktoken/ranks/o200k_base')).then((m) => new Tiktoken(m.default))
    cache.set(name, p)
  }
  return await p
}

export async function createTokenizer (model: string): Promise<Tokenizer> {
  const encoding = encodingForModel(model)
  const enc = await loadEncoding(encoding)
  // Special-token text in user content is counted as plain text, never as control tokens.
  const exact = (text: string) => text ? enc.encode(text, [], []).length : 0
  const count = (text: string) => {
    let n = 0
    let last = 0
    for (const m of text.matchAll(LONG_RUN)) {
      n += exact(text.slice(last, m.index))
      const chars = Array.from(m[0])
      for (let i = 0; i < chars.length; i += CUT) n += exact(chars.slice(i, i + CUT).join(''))
      last = m.index + m[0].length
    }
    return n + exact(text.slice(last))
  }
  const countMessage = (m: PromptMessage) => 3 + count(m.role) + count(m.content)
  return {
    encoding,
    count,
    countMessage,
    countPrompt: (messages) => messages.reduce((n, m) => n + countMessage(m), 3)
  }
}
