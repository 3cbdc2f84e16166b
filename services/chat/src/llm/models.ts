// The model registry: the configured models (CHAT_MODELS, or CHAT_MODEL alone), looked up by id, with each one's prompt budget.
import type { ChatModel } from '@chat-platform/contracts'
import type { ChatConfig } from '../config.ts'

export class ModelRegistry {
  /** In the configured order (GET /api/models lists them so). */
  readonly list: readonly ChatModel[]
  readonly default: ChatModel
  private readonly byId: Map<string, ChatModel>
  private readonly maxOutputTokens: number

  constructor (config: Pick<ChatConfig, 'CHAT_MODELS' | 'CHAT_MAX_OUTPUT_TOKENS'>) {
    this.list = config.CHAT_MODELS
    this.byId = new Map(config.CHAT_MODELS.map((m) => [m.id, m]))
    this.default = config.CHAT_MODELS.find((m) => m.default) ?? config.CHAT_MODELS[0]
    this.maxOutputTokens = config.CHAT_MAX_OUTPUT_TOKENS
  }

  /** The model with this id, or undefined when it is not configured. */
  get (id: string): ChatModel | undefined {
    return this.byId.get(id)
  }

  has (id: string): boolean {
    return this.byId.has(id)
  }

  /**
   * The model an exchange uses: the first id given that is configured (a per-message override, then the session's),
   * else the default. A session's model that was removed from config falls back to the default (the route refuses
   * an unknown id when it is set, so only a config change leads here).
   */
  resolve (...ids: (string | null | undefined)[]): ChatModel {
    for (const id of ids) {
      if (id) {
        const m = this.byId.get(id)
        if (m) return m
      }
    }
    return this.default
  }

  /** The prompt budget (system prompt, history, new message): the window less what the reply may take. */
  promptBudget (model: ChatModel): number {
    return model.context_tokens - this.maxOutputTokens
  }
}
