/**
 * The live snapshot: one EventSource on /events shared by every component, with the
 * rolling history the charts draw and per-client rates derived from successive snapshots.
 *
 * Failure handling: when the stream errors or goes quiet, the stream is closed and
 * GET /stats probes the server. An answer means the server is up but the stream is not
 * getting through (a buffering proxy): the snapshot is taken from the probe and the stream
 * retried a second later, so the page keeps refreshing by polling. No answer means the
 * server is unreachable: status turns "offline" and the stream is retried with backoff.
 * A 401 raises the token prompt; the stream reopens when a token is given.
 *
 * Plain TypeScript over Vue refs, with the browser pieces injected, so tests can drive it.
 */
import { shallowRef, ref, watch, type Ref, type ShallowRef } from 'vue'
import { ApiError, api, errorText } from '@/api/client'
import { auth, withTokenParam } from '@/api/auth'
import type { Snapshot } from '@/api/types'

export type ConnectionStatus = 'live' | 'connecting' | 'offline'

/** The charts show this much history. */
export const HISTORY_SECONDS = 5 * 60
/** Bound on kept samples whatever the event rate: 5 min at 4 events/s, with room to spare. */
export const HISTORY_MAX_SAMPLES = 1500
/** The gateway sends at least one event a second; this much silence means the stream is dead. */
export const STALE_AFTER_MS = 5000
/** Reconnect backoff: first retry after the base, doubling up to the cap. */
export const RETRY_BASE_MS = 500
export const RETRY_MAX_MS = 4000
/** When the stream fails but /stats answers, poll at the gateway's event rate. */
export const POLL_FALLBACK_MS = 1000
/** Per-client rates are smoothed over roughly this many seconds. */
export const CLIENT_RATE_TAU_S = 5

export interface RatePoint {
  /** Epoch seconds (server clock). */
  t: number
  in: number | null
  out: number | null
  acks: number | null
  redeliveries: number | null
}

export interface ClientRate {
  in: number
  out: number
}

/** The parts of EventSource the stream uses (a fake in tests). */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void
  onerror: ((event: Event) => void) | null
  close(): void
}

export interface StreamDeps {
  openEventSource: (url: string) => EventSourceLike
  fetchSnapshot: () => Promise<Snapshot>
  nowMs: () => number
}

export interface SnapshotStream {
  data: ShallowRef<Snapshot | null>
  error: Ref<string | null>
  status: Ref<ConnectionStatus>
  history: ShallowRef<RatePoint[]>
  clientRates: ShallowRef<ReadonlyMap<string, ClientRate>>
  /** Server clock minus local clock, in seconds (for countdowns against deadlines). */
  clockOffset: Ref<number>
  /** Count one more user; the first one opens the stream. Returns the release function. */
  acquire(): () => void
  /** Apply one snapshot as if it had arrived (used by the stream and by tests). */
  apply(snapshot: Snapshot): void
}

export function defaultDeps(): StreamDeps {
  return {
    openEventSource: (url) => new EventSource(url) as unknown as EventSourceLike,
    fetchSnapshot: () => api<Snapshot>('/stats'),
    nowMs: () => Date.now(),
  }
}

export function createSnapshotStream(deps: StreamDeps, eventsPath = '/events'): SnapshotStream {
  const data = shallowRef<Snapshot | null>(null)
  const error = ref<string | null>(null)
  const status = ref<ConnectionStatus>('connecting')
  const history = shallowRef<RatePoint[]>([])
  const clientRates = shallowRef<ReadonlyMap<string, ClientRate>>(new Map())
  const clockOffset = ref(0)

  let users = 0
  let source: EventSourceLike | null = null
  let staleTimer: ReturnType<typeof setTimeout> | null = null
  let retryTimer: ReturnType<typeof setTimeout> | null = null
  let failures = 0
  let generation = 0 // bumps on every open/close so late callbacks of old streams are ignored
  let stopAuthWatch: (() => void) | null = null

  function apply(snapshot: Snapshot): void {
    const previous = data.value
    data.value = snapshot
    clockOffset.value = snapshot.timestamp - deps.nowMs() / 1000
    pushHistory(snapshot)
    if (previous) updateClientRates(previous, snapshot)
  }

  function pushHistory(snapshot: Snapshot): void {
    const t = snapshot.timestamp
    const points = history.value
    const last = points[points.length - 1]
    if (last && t <= last.t) {
      if (t < last.t - 1) points.length = 0 // the server's clock went back: start over
      else return
    }
    const point: RatePoint = {
      t,
      in: snapshot.rates.in,
      out: snapshot.rates.out,
      acks: snapshot.rates.acks,
      redeliveries: snapshot.rates.redeliveries,
    }
    const horizon = t - HISTORY_SECONDS
    const kept = points.filter((p) => p.t >= horizon)
    kept.push(point)
    history.value = kept.length > HISTORY_MAX_SAMPLES ? kept.slice(-HISTORY_MAX_SAMPLES) : kept
  }

  /** A null point after the last one, so the charts show the outage as a gap. */
  function markGap(): void {
    const points = history.value
    const last = points[points.length - 1]
    if (!last || last.in === null) return
    history.value = [...points, { t: last.t + 0.5, in: null, out: null, acks: null, redeliveries: null }]
  }

  function updateClientRates(previous: Snapshot, current: Snapshot): void {
    const dt = current.timestamp - previous.timestamp
    if (dt <= 0) return
    const before = new Map(previous.clients.map((c) => [c.client_id, c]))
    const alpha = 1 - Math.exp(-dt / CLIENT_RATE_TAU_S)
    const next = new Map<string, ClientRate>()
    for (const client of current.clients) {
      const old = before.get(client.client_id)
      const smoothed = clientRates.value.get(client.client_id)
      if (!old) {
        next.set(client.client_id, smoothed ?? { in: 0, out: 0 })
        continue
      }
      const rateIn = Math.max(0, client.messages_in - old.messages_in) / dt
      const rateOut = Math.max(0, client.messages_out - old.messages_out) / dt
      next.set(client.client_id, {
        in: smoothed ? smoothed.in + alpha * (rateIn - smoothed.in) : rateIn,
        out: smoothed ? smoothed.out + alpha * (rateOut - smoothed.out) : rateOut,
      })
    }
    clientRates.value = next
  }

  function clearTimers(): void {
    if (staleTimer !== null) clearTimeout(staleTimer)
    if (retryTimer !== null) clearTimeout(retryTimer)
    staleTimer = null
    retryTimer = null
  }

  function closeSource(): void {
    generation += 1
    if (source) {
      source.onerror = null
      source.close()
      source = null
    }
  }

  function armStaleTimer(gen: number): void {
    if (staleTimer !== null) clearTimeout(staleTimer)
    staleTimer = setTimeout(() => {
      if (gen === generation) void fail()
    }, STALE_AFTER_MS)
  }

  function open(): void {
    closeSource()
    clearTimers()
    if (users === 0) return
    if (status.value !== 'offline') status.value = 'connecting'
    const gen = generation
    let es: EventSourceLike
    try {
      es = deps.openEventSource(withTokenParam(eventsPath))
    } catch {
      void fail()
      return
    }
    source = es
    es.addEventListener('snapshot', (event) => {
      if (gen !== generation) return
      let snapshot: Snapshot
      try {
        snapshot = JSON.parse(event.data) as Snapshot
      } catch {
        return // one bad event does not end the stream
      }
      apply(snapshot)
      status.value = 'live'
      error.value = null
      failures = 0
      armStaleTimer(gen)
    })
    // The gateway says goodbye before a graceful stop: find out at once, not on the timeout.
    es.addEventListener('shutdown', () => {
      if (gen === generation) void fail()
    })
    es.onerror = () => {
      if (gen === generation) void fail()
    }
    armStaleTimer(gen)
  }

  function scheduleOpen(delayMs: number): void {
    if (retryTimer !== null) clearTimeout(retryTimer)
    retryTimer = setTimeout(() => {
      retryTimer = null
      open()
    }, delayMs)
  }

  async function fail(): Promise<void> {
    closeSource()
    clearTimers()
    const gen = generation
    failures += 1
    try {
      const snapshot = await deps.fetchSnapshot()
      if (gen !== generation || users === 0) return
      apply(snapshot)
      status.value = 'live'
      error.value = null
      scheduleOpen(POLL_FALLBACK_MS)
    } catch (err) {
      if (gen !== generation || users === 0) return
      if (err instanceof ApiError && err.status === 401) {
        status.value = 'connecting'
        error.value = 'The server asks for a token.'
        return // reopened by the auth watcher once a token is given
      }
      if (status.value === 'live') markGap()
      status.value = 'offline'
      error.value = errorText(err)
      scheduleOpen(Math.min(RETRY_BASE_MS * 2 ** (failures - 1), RETRY_MAX_MS))
    }
  }

  function acquire(): () => void {
    users += 1
    if (users === 1) {
      stopAuthWatch = watch(
        () => auth.epoch,
        () => {
          failures = 0
          open()
        },
      )
      open()
    }
    let released = false
    return () => {
      if (released) return
      released = true
      users -= 1
      if (users === 0) {
        stopAuthWatch?.()
        stopAuthWatch = null
        closeSource()
        clearTimers()
        status.value = 'connecting'
      }
    }
  }

  return { data, error, status, history, clientRates, clockOffset, acquire, apply }
}
