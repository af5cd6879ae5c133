/**
 * useClients(): producers and consumers from the shared snapshot, with rates derived from
 * successive snapshots (the snapshot carries counts; rates are their smoothed differences).
 */
import { computed } from 'vue'
import type { ClientInfo } from '@/api/types'
import { useSnapshot, type ClientRate } from './useSnapshot'

export interface ClientRow extends ClientInfo {
  rate: ClientRate
}

export function useClients() {
  const { data: snapshot, error, status, clientRates } = useSnapshot()
  const data = computed<ClientRow[] | null>(() => {
    const clients = snapshot.value?.clients
    if (!clients) return null
    const rates = clientRates.value
    return [...clients]
      .sort((a, b) => Number(b.active) - Number(a.active) || b.last_seen - a.last_seen)
      .map((c) => ({ ...c, rate: rates.get(c.client_id) ?? { in: 0, out: 0 } }))
  })
  const now = computed(() => snapshot.value?.timestamp ?? Date.now() / 1000)
  return { data, error, status, now }
}
