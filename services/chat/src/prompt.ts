// Prompt building: the system prompt, as much recent history as fits the token budget, then the new message.
import type { PromptMessage, Tokenizer } from '@chat-platform/tokenizer'

export interface BuiltPrompt {
  messages: PromptMessage[]
  /** Prompt tokens by the local tokenizer (the estimate when the provider reports no usage). */
  tokens: number
  /** The new message's own tokens (stored with it for later budgets). */
  contentTokens: number
  /** How many history messages were included. */
  historyUsed: number
}

// The same few strings (roles, the system prompt) are priced on every exchange: count each once per tokenizer.
const fixedCosts = new WeakMap<Tokenizer, Map<string, number>>()
function messageCost (tokenizer: Tokenizer, role: PromptMessage['role'], content: string): number {
  let costs = fixedCosts.get(tokenizer)
  if (!costs) fixedCosts.set(tokenizer, costs = new Map())
  const key = `${role}\u0000${content}`
  let n = costs.get(key)
  if (n === undefined) {
    n = tokenizer.countMessage({ role, content })
    if (costs.size < 64) costs.set(key, n)
  }
  return n
}

/**
 * `historyNewestFirst` holds earlier turns, newest first. Turns are added from the newest back and stop at
 * the first one that does not fit, so the model never sees a gap in the conversation. The system prompt and
 * the new message are always sent: the caller refuses an exchange whose fixed part (fixedPromptTokens) does not
 * fit the budget before building its prompt. `contentTokens`: the new message's count, when the caller has it.
 */
export function buildPrompt (input: { systemPrompt: string, historyNewestFirst: { role: 'user' | 'assistant', content: string, content_tokens: number }[], content: string, contentTokens?: number, budget: number, tokenizer: Tokenizer }): BuiltPrompt {
  const { tokenizer } = input
  const system: PromptMessage[] = input.systemPrompt ? [{ role: 'system', content: input.systemPrompt }] : []
  const current: PromptMessage = { role: 'user', content: input.content }
  const fixed = fixedPromptTokens(input)
  const contentTokens = fixed.contentTokens
  let tokens = fixed.tokens
  const history: PromptMessage[] = []
  for (const m of input.historyNewestFirst) {
    // Stored counts: re-tokenizing up to 100 long messages on every exchange would cost seconds.
    const cost = messageCost(tokenizer, m.role, '') + m.content_tokens
    if (tokens + cost > input.budget) break
    tokens += cost
    history.push({ role: m.role, content: m.content })
  }
  history.reverse()
  return { messages: [...system, ...history, current], tokens, contentTokens, historyUsed: history.length }
}

/**
 * What every prompt of this exchange costs whatever the history: the system prompt and the new message (3 tokens
 * prime the reply; each message costs its role and content plus 3). An exchange where this exceeds the model's
 * budget cannot be sent within the model's window (DESIGN §6.4) and is refused before admission.
 */
export function fixedPromptTokens (input: { systemPrompt: string, content: string, contentTokens?: number, tokenizer: Tokenizer }): { tokens: number, contentTokens: number } {
  const { tokenizer } = input
  const contentTokens = input.contentTokens ?? tokenizer.count(input.content)
  const tokens = 3 + (input.systemPrompt ? messageCost(tokenizer, 'system', input.systemPrompt) : 0) + messageCost(tokenizer, 'user', '') + contentTokens
  return { tokens, contentTokens }
}
