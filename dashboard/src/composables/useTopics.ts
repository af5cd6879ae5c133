/**
 * useTopics() / useTopic(name): topics with their groups, live from the shared snapshot
 * (the snapshot already carries every topic, so no extra requests are made).
 */
import { computed, toValue, type MaybeRefOrGetter } from 'vue'
import type { GroupInfo, TopicInfo } from '@/api/types'
import { useSnapshot } from './useSnapshot'

export function useTopics() {
  const { data: snapshot, error, status } = useSnapshot()
  const data = computed<TopicInfo[] | null>(() => {
    const topics = snapshot.value?.topics
    return topics ? [...topics].sort((a, b) => a.name.localeCompare(b.name)) : null
  })
  return { data, error, status }
}

export function useTopic(name: MaybeRefOrGetter<string>) {
  const { data: snapshot, error, status } = useSnapshot()
  const data = computed<TopicInfo | null>(
    () => snapshot.value?.topics.find((t) => t.name === toValue(name)) ?? null,
  )
  /** True once a snapshot arrived and the topic is not in it. */
  const missing = computed(() => snapshot.value !== null && data.value === null)
  return { data, error, status, missing }
}

/** Every group of every topic, live from the shared snapshot. */
export function useGroups() {
  const { data: snapshot, error, status } = useSnapshot()
  const data = computed<GroupInfo[] | null>(() => {
    if (!snapshot.value) return null
    return snapshot.value.topics
      .flatMap((t) => t.groups)
      .sort((a, b) => a.topic.localeCompare(b.topic) || a.name.localeCompare(b.name))
  })
  return { data, error, status }
}
