// The trivial upstream of the gateway section: answers every request at once, as small as billing's balance answer.
import { createServer } from 'node:http'

const body = JSON.stringify({ balance: 1000000 })
const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
})
server.listen(0, '127.0.0.1', () => process.send?.(server.address().port))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
