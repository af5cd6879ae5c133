/**
 * usePolled(): fetch a resource now and again every `intervalMs` (the next request starts
 * after the previous one ended, so a slow server is never asked twice at once). Refetches
 * at once when `key` changes or a new token is given; aborts and stops on unmount.
 */
import { getCurrentScope, onScopeDispose, ref, shallowRef, watch, type Ref, type ShallowRef, type WatchSource } from 'vue'
import { auth } from '@/api/auth'
import { errorText } from '@/api/client'

export type FetchStatus = 'idle' | 'loading' | 'ready' | 'error'

export interface Polled<T> {
  data: ShallowRef<T | null>
  error: Ref<string | null>
  status: Ref<FetchStatus>
  refresh: () => Promise<void>
  stop: () => void
}

export function usePolled<T>(
  fetcher: (signal: AbortSignal) => Promise<T>,
  options: { intervalMs: number; key?: WatchSource<unknown> },
): Polled<T> {
  const data = shallowRef<T | null>(null)
  const error = ref<string | null>(null)
  const status = ref<FetchStatus>('idle')
  let controller: AbortController | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let stopped = false

  async function refresh(): Promise<void> {
    if (timer !== null) clearTimeout(timer)
    timer = null
    controller?.abort()
    const mine = new AbortController()
    controller = mine
    if (data.value === null) status.value = 'loading'
    try {
      const value = await fetcher(mine.signal)
      if (mine.signal.aborted) return
      data.value = value
      error.value = null
      status.value = 'ready'
    } catch (err) {
      if (mine.signal.aborted) return
      error.value = errorText(err)
      status.value = 'error'
    }
    if (!stopped && controller === mine) {
      timer = setTimeout(() => void refresh(), options.intervalMs)
    }
  }

  function stop(): void {
    stopped = true
    if (timer !== null) clearTimeout(timer)
    controller?.abort()
  }

  const sources: WatchSource<unknown>[] = [() => auth.epoch]
  if (options.key) sources.push(options.key)
  watch(sources, () => {
    data.value = null
    void refresh()
  })
  void refresh()
  if (getCurrentScope()) onScopeDispose(stop)
  return { data, error, status, refresh, stop }
}
