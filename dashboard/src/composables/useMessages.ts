/**
 * useMessages(topic): browse a topic without consuming (peek) by partition and offset,
 * key or text, a page at a time. Requests run when asked, never on a timer: a browse
 * reads the log, and the user decides when.
 */
import { ref, shallowRef, toValue, watch, type MaybeRefOrGetter } from 'vue'
import { api, errorText, seg } from '@/api/client'
import type { BrowseQuery, BrowseResult, StoredMessage } from '@/api/types'
import type { FetchStatus } from './usePolled'

export const BROWSE_PAGE = 50

export function useMessages(topic: MaybeRefOrGetter<string>) {
  const data = shallowRef<StoredMessage[] | null>(null)
  const nextOffset = ref<number | null>(null)
  const error = ref<string | null>(null)
  const status = ref<FetchStatus>('idle')
  let lastQuery: BrowseQuery = {}
  let controller: AbortController | null = null

  async function run(query: BrowseQuery, append: boolean): Promise<void> {
    controller?.abort()
    const mine = new AbortController()
    controller = mine
    status.value = 'loading'
    error.value = null
    try {
      const result = await api<BrowseResult>(`/topics/${seg(toValue(topic))}/messages`, {
        signal: mine.signal,
        query: { limit: BROWSE_PAGE, ...query },
      })
      data.value = append && data.value ? [...data.value, ...result.messages] : result.messages
      nextOffset.value = result.next_offset
      status.value = 'ready'
    } catch (err) {
      if (mine.signal.aborted) return
      error.value = errorText(err)
      status.value = 'error'
    }
  }

  /** Start a new browse; the results replace the current ones. */
  function browse(query: BrowseQuery = {}): Promise<void> {
    lastQuery = query
    return run(query, false)
  }

  /** Fetch the next page of the last browse, appended to the current results. */
  function loadMore(): Promise<void> {
    if (nextOffset.value === null) return Promise.resolve()
    return run({ ...lastQuery, offset: nextOffset.value }, true)
  }

  watch(
    () => toValue(topic),
    () => {
      controller?.abort()
      data.value = null
      nextOffset.value = null
      status.value = 'idle'
    },
  )

  return { data, error, status, nextOffset, browse, loadMore }
}
