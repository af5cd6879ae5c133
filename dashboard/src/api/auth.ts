/**
 * The bearer token the gateway may ask for. Kept in localStorage so one prompt lasts;
 * `needed` turns true when any call answers 401, which shows the token dialog once.
 * `epoch` grows whenever the token changes so live connections reopen with it.
 */
import { reactive } from 'vue'

export const TOKEN_KEY = 'spoolmq.token'

function readStored(): string {
  try {
    return globalThis.localStorage?.getItem(TOKEN_KEY) ?? ''
  } catch {
    return '' // storage blocked (private mode): ask again next time
  }
}

export const auth = reactive({
  token: readStored(),
  needed: false,
  /** The last token was refused (shown as a hint in the dialog). */
  rejected: false,
  epoch: 0,
})

export function setToken(token: string): void {
  auth.token = token.trim()
  try {
    if (auth.token) globalThis.localStorage?.setItem(TOKEN_KEY, auth.token)
    else globalThis.localStorage?.removeItem(TOKEN_KEY)
  } catch {
    // storage blocked: the token still lives for this page
  }
  auth.needed = false
  auth.epoch += 1
}

/** Called on a 401: ask for a token (once, until the user answers). */
export function requireToken(): void {
  if (auth.needed) return
  auth.rejected = auth.token !== ''
  auth.needed = true
}

export function dismissTokenPrompt(): void {
  auth.needed = false
}

export function authHeaders(): Record<string, string> {
  return auth.token ? { Authorization: `Bearer ${auth.token}` } : {}
}

/** EventSource cannot send headers: the token goes in the `token` query parameter. */
export function withTokenParam(url: string): string {
  if (!auth.token) return url
  const sep = url.includes('?') ? '&' : '?'
  return `${url}${sep}token=${encodeURIComponent(auth.token)}`
}
