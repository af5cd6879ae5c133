/**
 * fetch() for the gateway's JSON API: sends the token, turns error answers into ApiError
 * (with the gateway's code and message), and raises the token prompt on 401.
 * Paths are relative to the page's origin: the dashboard site (or Vite in dev) proxies them.
 */
import { authHeaders, requireToken } from './auth'
import type { ErrorBody } from './types'

export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }

  /** The server could not be reached (no answer, or the proxy found no gateway). */
  get unreachable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504
  }
}

export type Query = Record<string, string | number | boolean | undefined | null>

export function buildUrl(path: string, query?: Query): string {
  if (!query) return path
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    params.set(key, String(value))
  }
  const text = params.toString()
  return text ? `${path}?${text}` : path
}

/** Path segment for a topic or group name (names may hold dots and dashes, never slashes). */
export function seg(name: string): string {
  return encodeURIComponent(name)
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false
  const err = (value as { error: unknown }).error
  return typeof err === 'object' && err !== null && 'code' in err && 'message' in err
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'DELETE'
  query?: Query
  body?: unknown
  signal?: AbortSignal
}

/**
 * Call the gateway and return its JSON answer.
 * Raises ApiError: status 0 when the network failed, else the answer's status and code.
 * An AbortError from `signal` propagates unchanged.
 */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...authHeaders() }
  let body: string | undefined
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(options.body)
  }
  let response: Response
  try {
    response = await fetch(buildUrl(path, options.query), {
      method: options.method ?? 'GET',
      headers,
      body,
      signal: options.signal,
      cache: 'no-store',
    })
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err
    throw new ApiError(0, 'unreachable', 'Server unreachable')
  }
  const text = await response.text()
  let json: unknown = undefined
  if (text) {
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
  }
  if (!response.ok) {
    if (response.status === 401) requireToken()
    if (isErrorBody(json)) throw new ApiError(response.status, json.error.code, json.error.message)
    const fallback = response.status === 502 ? 'Server unreachable' : response.statusText
    throw new ApiError(response.status, `http_${response.status}`, fallback || 'Request failed')
  }
  if (json === undefined) throw new ApiError(response.status, 'bad_json', 'The server answered no JSON')
  return json as T
}

/** A message for the user from anything a call may throw. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return 'A token is needed (or the one given was refused).'
    if (err.unreachable) return 'Server unreachable — retrying.'
    return err.message
  }
  if (err instanceof Error) return err.message
  return String(err)
}
