/**
 * useSnapshot(): the live broker snapshot from GET /events, shared by every component
 * that asks (one EventSource for the whole page). The stream closes when the last
 * component using it unmounts.
 */
import { getCurrentScope, onScopeDispose } from 'vue'
import { createSnapshotStream, defaultDeps, type SnapshotStream } from './snapshotStream'

export type { ConnectionStatus, RatePoint, ClientRate } from './snapshotStream'

let shared: SnapshotStream | null = null

function stream(): SnapshotStream {
  shared ??= createSnapshotStream(defaultDeps())
  return shared
}

/** Use this stream instead of the browser one (tests). */
export function provideSnapshotStream(custom: SnapshotStream | null): void {
  shared = custom
}

export function useSnapshot() {
  const s = stream()
  const release = s.acquire()
  if (getCurrentScope()) onScopeDispose(release)
  return {
    data: s.data,
    error: s.error,
    status: s.status,
    history: s.history,
    clientRates: s.clientRates,
    clockOffset: s.clockOffset,
    release,
  }
}
