/// <reference types="vitest/config" />
import { fileURLToPath, URL } from 'node:url'
import type { IncomingMessage } from 'node:http'
import { defineConfig, type ProxyOptions } from 'vite'
import vue from '@vitejs/plugin-vue'

/** Where `npm run dev` sends API calls: a gateway started with `spoolmq serve` or `spoolmq gateway`. */
const GATEWAY = process.env.SPOOLMQ_GATEWAY ?? 'http://127.0.0.1:8080'

/** The gateway's paths. /topics and /groups are also pages of this app: see `pageRequest`. */
const API_PATHS = [
  '/send', '/receive', '/ack', '/nack', '/extend', '/stats', '/monitoring', '/events',
  '/topics', '/groups', '/metrics', '/healthz', '/openapi.json',
]

/**
 * A browser navigation (a GET asking for HTML) to a path that is both a page and an API
 * path gets the app; fetch() and EventSource ask for JSON or an event stream and go to the
 * gateway. http_gateway/dashboard_site.py applies the same rule in production.
 */
function pageRequest(req: IncomingMessage): string | undefined {
  const accept = req.headers.accept ?? ''
  if (req.method === 'GET' && accept.includes('text/html')) return '/index.html'
  return undefined
}

const proxy: Record<string, ProxyOptions> = Object.fromEntries(
  API_PATHS.map((path) => [
    // Anchored so /topicsfoo is not proxied, but /topics/x and /topics?y are.
    `^${path.replace('.', '\\.')}(/.*)?(\\?.*)?$`,
    { target: GATEWAY, changeOrigin: false, bypass: pageRequest },
  ]),
)

export default defineConfig({
  plugins: [vue()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  server: { host: '127.0.0.1', port: 5173, proxy },
  preview: { host: '127.0.0.1', port: 4173, proxy },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 600 },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
    restoreMocks: true,
  },
})
