// What the services' ops commands share with the `pnpm ops` dispatcher: a usage mistake (printed with the usage, exit 2).
export class UsageError extends Error {
  override name = 'UsageError'
}
