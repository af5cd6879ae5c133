/**
 * useTheme(): light, dark, or follow the system (prefers-color-scheme). The choice is kept
 * in localStorage and applied as `data-theme` on <html>; `resolved` is what is shown.
 */
import { computed, ref } from 'vue'

export type ThemeMode = 'system' | 'light' | 'dark'
export const THEME_KEY = 'spoolmq.theme'
const ORDER: ThemeMode[] = ['system', 'light', 'dark']

function stored(): ThemeMode {
  try {
    const value = globalThis.localStorage?.getItem(THEME_KEY)
    return value === 'light' || value === 'dark' ? value : 'system'
  } catch {
    return 'system'
  }
}

const media =
  typeof window !== 'undefined' && typeof window.matchMedia === 'function'
    ? window.matchMedia('(prefers-color-scheme: dark)')
    : null

const mode = ref<ThemeMode>(stored())
const systemDark = ref(media?.matches ?? false)
media?.addEventListener('change', (event) => {
  systemDark.value = event.matches
})

const resolved = computed<'light' | 'dark'>(() =>
  mode.value === 'system' ? (systemDark.value ? 'dark' : 'light') : mode.value,
)

function apply(): void {
  if (typeof document === 'undefined') return
  const root = document.documentElement
  if (mode.value === 'system') root.removeAttribute('data-theme')
  else root.setAttribute('data-theme', mode.value)
}
apply()

export function setTheme(next: ThemeMode): void {
  mode.value = next
  try {
    if (next === 'system') globalThis.localStorage?.removeItem(THEME_KEY)
    else globalThis.localStorage?.setItem(THEME_KEY, next)
  } catch {
    // storage blocked: the choice lasts for this page
  }
  apply()
}

export function useTheme() {
  function cycle(): void {
    setTheme(ORDER[(ORDER.indexOf(mode.value) + 1) % ORDER.length] ?? 'system')
  }
  return { mode, resolved, setTheme, cycle }
}
