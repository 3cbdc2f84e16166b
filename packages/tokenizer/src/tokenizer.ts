// The local tokenizer (a counting-only BPE over js-tiktoken's rank files): prompt budgets and estimated usage.
import { getEncodingNameForModel, type TiktokenModel } from 'js-tiktoken/lite'

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
 * characters without punctuation took 23 s in one call with js-tiktoken. Runs of more than 24 letters, symbols
 * or spaces (rare in real text) are counted in 16-character cuts, at most a token off per cut; the rest is exact.
 */
const LONG_RUN = /[\p{L}\p{M}]{25,}|[^\s\p{L}\p{N}]{25,}|\s{25,}/gu
const CUT = 16

/** js-tiktoken's rank file: `bpe_ranks` is lines of `<tag> <first rank> <base64 token bytes>…`, ranks consecutive. */
interface RankFile { pat_str: string, bpe_ranks: string }

const NO_RANK = 0x7fffffff
const BASE64 = new Int8Array(128).fill(-1)
for (let i = 0; i < 64; i++) BASE64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i

function fnv1a (buf: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i], 0x01000193)
  return h >>> 0
}

/**
 * The rank table in typed arrays: every token's bytes in one buffer, found through an open-addressing hash
 * of those bytes. About 5 MB for o200k_base, where js-tiktoken's two Maps (comma-joined byte-list keys plus a
 * decode map we never use) held ~67 MB of heap and ~120 MB of RSS. Returns the rank of buf[from, to) or NO_RANK.
 */
function buildRankLookup (file: RankFile): (buf: Uint8Array, from: number, to: number) => number {
  const src = file.bpe_ranks
  // Upper bounds (a token is at least 4 base64 characters and a space), trimmed once parsed.
  const allBytes = new Uint8Array(Math.ceil(src.length * 3 / 4))
  const allStarts = new Int32Array(Math.ceil(src.length / 5) + 2)
  const allRanks = new Int32Array(allStarts.length)
  let tokens = 0
  let written = 0
  for (const line of src.split('\n')) {
    const tag = line.indexOf(' ') // an empty line finds no spaces and adds nothing
    let p = line.indexOf(' ', tag + 1)
    let rank = Number.parseInt(line.slice(tag + 1, p), 10)
    while (p >= 0) {
      allStarts[tokens] = written
      allRanks[tokens++] = rank++
      let acc = 0
      let bits = 0
      for (p++; p < line.length; p++) {
        const v = BASE64[line.charCodeAt(p)]
        if (v < 0) break // '=' padding or the next space
        acc = ((acc << 6) | v) & 0xffffff
        bits += 6
        if (bits >= 8) {
          bits -= 8
          allBytes[written++] = acc >> bits
        }
      }
      p = line.indexOf(' ', p)
    }
  }
  allStarts[tokens] = written
  const bytes = allBytes.slice(0, written)
  const starts = allStarts.slice(0, tokens + 1)
  const ranks = allRanks.slice(0, tokens)
  let size = 1
  while (size < tokens * 2) size <<= 1
  const mask = size - 1
  const slots = new Int32Array(size).fill(-1) // token index, -1 = empty
  for (let t = 0; t < tokens; t++) {
    let slot = fnv1a(bytes, starts[t], starts[t + 1]) & mask
    while (slots[slot] >= 0) slot = (slot + 1) & mask
    slots[slot] = t
  }
  return (buf, from, to) => {
    const len = to - from
    for (let slot = fnv1a(buf, from, to) & mask, t = slots[slot]; t >= 0; slot = (slot + 1) & mask, t = slots[slot]) {
      const at = starts[t]
      if (starts[t + 1] - at === len) {
        let k = 0
        while (k < len && bytes[at + k] === buf[from + k]) k++
        if (k === len) return ranks[t]
      }
    }
    return NO_RANK
  }
}

/**
 * Tokens in `text` with special-token text counted as plain text: the same count as js-tiktoken's
 * `encode(text, [], []).length` (same split regex, same lowest-rank-first merge), without building tokens.
 */
function buildCounter (file: RankFile): (text: string) => number {
  const rankOf = buildRankLookup(file)
  const split = new RegExp(file.pat_str, 'gu')
  const utf8 = new TextEncoder()
  let buf = new Uint8Array(1024)
  // Byte-level BPE of buf[0, n): merge the adjacent pair with the lowest rank (leftmost on ties) until none has one.
  const mergedParts = (n: number) => {
    const bounds = new Int32Array(n + 1) // part i is buf[bounds[i], bounds[i + 1])
    const pairs = new Int32Array(n) // rank of parts i and i + 1 merged
    for (let i = 0; i <= n; i++) bounds[i] = i
    for (let i = 0; i < n - 1; i++) pairs[i] = rankOf(buf, i, i + 2)
    pairs[n - 1] = NO_RANK
    let parts = n
    while (parts > 1) {
      let min = NO_RANK
      let at = -1
      for (let i = 0; i < parts - 1; i++) {
        if (pairs[i] < min) {
          min = pairs[i]
          at = i
        }
      }
      if (at < 0) break
      bounds.copyWithin(at + 1, at + 2, parts + 1)
      pairs.copyWithin(at + 1, at + 2, parts)
      parts--
      pairs[at] = at + 1 < parts ? rankOf(buf, bounds[at], bounds[at + 2]) : NO_RANK
      if (at > 0) pairs[at - 1] = rankOf(buf, bounds[at - 1], bounds[at + 1])
    }
    return parts
  }
  return (text) => {
    // A UTF-16 unit is at most 3 UTF-8 bytes (a lone surrogate becomes U+FFFD, as in TextEncoder).
    if (buf.length < text.length * 3) buf = new Uint8Array(text.length * 3)
    let n = 0
    for (const [piece] of text.matchAll(split)) {
      const len = utf8.encodeInto(piece, buf).written
      n += rankOf(buf, 0, len) === NO_RANK ? mergedParts(len) : 1
    }
    return n
  }
}

const cache = new Map<EncodingName, Promise<(text: string) => number>>()

async function loadEncoding (name: EncodingName): Promise<(text: string) => number> {
  let p = cache.get(name)
  if (!p) {
    p = (name === 'cl100k_base' ? import('js-tiktoken/ranks/cl100k_base') : import('js-tiktoken/ranks/o200k_base')).then((m) => buildCounter(m.default))
    cache.set(name, p)
  }
  return await p
}

export async function createTokenizer (model: string): Promise<Tokenizer> {
  const encoding = encodingForModel(model)
  const countExact = await loadEncoding(encoding)
  const exact = (text: string) => text ? countExact(text) : 0
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
