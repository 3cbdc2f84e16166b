// Lint config: neostandard with TypeScript support, the house style's linter.
import neostandard from 'neostandard'

export default neostandard({ ts: true, ignores: ['**/node_modules/**', '**/dist/**', 'coverage/**', '.tap/**'] })
