import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, api, buildUrl, errorText } from './client'
import { TOKEN_KEY, auth, dismissTokenPrompt, setToken, withTokenParam } from './auth'

function answer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

describe('api', () => {
  afterEach(() => {
    setToken('')
    dismissTokenPrompt()
    vi.unstubAllGlobals()
  })

  it('sends the stored token as a bearer header and returns the JSON', async () => {
    const fetch = vi.fn(async () => answer(200, { redriven: 2 }))
    vi.stubGlobal('fetch', fetch)
    setToken('abc')
    const result = await api<{ redriven: number }>('/topics/t/groups/g/redrive', {
      method: 'POST',
      body: { ids: ['0:1'] },
    })
    expect(result.redriven).toBe(2)
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit]
    expect(url).toBe('/topics/t/groups/g/redrive')
    expect(init.method).toBe('POST')
    expect(init.body).toBe('{"ids":["0:1"]}')
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer abc')
    expect(localStorage.getItem(TOKEN_KEY)).toBe('abc')
  })

  it('turns an error answer into an ApiError with the gateway code', async () => {
    vi.stubGlobal('fetch', async () => answer(404, { error: { code: 'topic_not_found', message: 'no topic x' } }))
    const err = await api('/topics/x').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).code).toBe('topic_not_found')
    expect(errorText(err)).toBe('no topic x')
  })

  it('asks for a token on 401', async () => {
    vi.stubGlobal('fetch', async () => answer(401, { error: { code: 'unauthorized', message: 'token required' } }))
    expect(auth.needed).toBe(false)
    await expect(api('/stats')).rejects.toMatchObject({ status: 401 })
    expect(auth.needed).toBe(true)
    expect(auth.rejected).toBe(false)
  })

  it('reports the server unreachable when nothing answers or the proxy has no gateway', async () => {
    vi.stubGlobal('fetch', async () => {
      throw new TypeError('Failed to fetch')
    })
    const down = await api('/stats').catch((e: unknown) => e)
    expect((down as ApiError).unreachable).toBe(true)
    vi.stubGlobal('fetch', async () => answer(502, { error: { code: 'gateway_unreachable', message: 'x' } }))
    const proxied = await api('/stats').catch((e: unknown) => e)
    expect((proxied as ApiError).unreachable).toBe(true)
    expect(errorText(proxied)).toMatch(/unreachable/)
  })
})

describe('urls', () => {
  it('leaves out empty query values', () => {
    expect(buildUrl('/topics/t/messages', { offset: 0, key: '', text: undefined, limit: 50 })).toBe(
      '/topics/t/messages?offset=0&limit=50',
    )
  })

  it('puts the token in the query for EventSource', () => {
    setToken('a b')
    expect(withTokenParam('/events')).toBe('/events?token=a%20b')
    setToken('')
    expect(withTokenParam('/events')).toBe('/events')
  })
})
