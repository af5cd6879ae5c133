/** useSendMessage(topic): POST /send/{topic} one message, keeping the last result. */
import { ref, shallowRef, toValue, type MaybeRefOrGetter } from 'vue'
import { api, errorText, seg } from '@/api/client'
import type { SendRequest, SendResult } from '@/api/types'
import type { FetchStatus } from './usePolled'

export function useSendMessage(topic: MaybeRefOrGetter<string>) {
  const data = shallowRef<SendResult | null>(null)
  const error = ref<string | null>(null)
  const status = ref<FetchStatus>('idle')

  /** Send; returns the result, or null on failure (see error). */
  async function send(request: SendRequest): Promise<SendResult | null> {
    status.value = 'loading'
    error.value = null
    try {
      const result = await api<SendResult>(`/send/${seg(toValue(topic))}`, {
        method: 'POST',
        body: request,
      })
      data.value = result
      status.value = 'ready'
      return result
    } catch (err) {
      error.value = errorText(err)
      status.value = 'error'
      return null
    }
  }

  return { data, error, status, send }
}
