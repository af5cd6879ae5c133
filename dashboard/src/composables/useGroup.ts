/**
 * useGroup(topic, group): one group's state and its in-flight leases, refreshed every
 * second, plus seek (move the group's position to replay or skip messages).
 */
import { ref, toValue, type MaybeRefOrGetter } from 'vue'
import { api, errorText, seg } from '@/api/client'
import type { GroupInfo, LeaseInfo, LeasesResult, SeekRequest } from '@/api/types'
import { usePolled } from './usePolled'

/** Leases shown at most; the gateway caps its answer too. */
export const LEASES_LIMIT = 500
export const GROUP_REFRESH_MS = 1000

export interface GroupState {
  group: GroupInfo
  leases: LeaseInfo[]
}

export function groupPath(topic: string, group: string): string {
  return `/topics/${seg(topic)}/groups/${seg(group)}`
}

export function useGroup(topic: MaybeRefOrGetter<string>, group: MaybeRefOrGetter<string>) {
  const polled = usePolled<GroupState>(
    async (signal) => {
      const path = groupPath(toValue(topic), toValue(group))
      const [info, leases] = await Promise.all([
        api<GroupInfo>(path, { signal }),
        api<LeasesResult>(`${path}/leases`, { signal, query: { limit: LEASES_LIMIT } }),
      ])
      return { group: info, leases: leases.leases }
    },
    { intervalMs: GROUP_REFRESH_MS, key: () => [toValue(topic), toValue(group)] },
  )

  const seeking = ref(false)
  const seekError = ref<string | null>(null)

  /** Move the group; returns the group as it is afterwards, or null on failure (see seekError). */
  async function seek(request: SeekRequest): Promise<GroupInfo | null> {
    seeking.value = true
    seekError.value = null
    try {
      const info = await api<GroupInfo>(`${groupPath(toValue(topic), toValue(group))}/seek`, {
        method: 'POST',
        body: request,
      })
      await polled.refresh()
      return info
    } catch (err) {
      seekError.value = errorText(err)
      return null
    } finally {
      seeking.value = false
    }
  }

  return { ...polled, seek, seeking, seekError }
}
