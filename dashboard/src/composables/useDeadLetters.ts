/**
 * useDeadLetters(topic, group): the group's dead letters, refreshed every few seconds, and
 * redrive (hand them back to that group only): some ids, those whose reason matches, or all.
 */
import { ref, toValue, type MaybeRefOrGetter } from 'vue'
import { api, errorText } from '@/api/client'
import type { DeadLetter, DeadLettersResult, RedriveRequest, RedriveResult } from '@/api/types'
import { groupPath } from './useGroup'
import { usePolled } from './usePolled'

export const DEAD_LETTERS_REFRESH_MS = 2000
export const DEAD_LETTERS_LIMIT = 1000

export function useDeadLetters(topic: MaybeRefOrGetter<string>, group: MaybeRefOrGetter<string>) {
  const polled = usePolled<DeadLetter[]>(
    async (signal) => {
      const t = toValue(topic)
      const g = toValue(group)
      if (!t || !g) return []
      const result = await api<DeadLettersResult>(`${groupPath(t, g)}/dead-letters`, {
        signal,
        query: { limit: DEAD_LETTERS_LIMIT },
      })
      return result.dead_letters
    },
    { intervalMs: DEAD_LETTERS_REFRESH_MS, key: () => [toValue(topic), toValue(group)] },
  )

  const redriving = ref(false)
  const redriveError = ref<string | null>(null)
  const lastRedriven = ref<number | null>(null)

  /** Redrive and return how many went back, or null on failure (see redriveError). */
  async function redrive(request: RedriveRequest): Promise<number | null> {
    redriving.value = true
    redriveError.value = null
    try {
      const result = await api<RedriveResult>(
        `${groupPath(toValue(topic), toValue(group))}/redrive`,
        { method: 'POST', body: request },
      )
      lastRedriven.value = result.redriven
      await polled.refresh()
      return result.redriven
    } catch (err) {
      redriveError.value = errorText(err)
      return null
    } finally {
      redriving.value = false
    }
  }

  return { ...polled, redrive, redriving, redriveError, lastRedriven }
}
