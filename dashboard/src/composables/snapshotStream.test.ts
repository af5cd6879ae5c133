import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '@/api/client'
import { auth, setToken } from '@/api/auth'
import type { ClientInfo, Snapshot } from '@/api/types'
import {
  HISTORY_SECONDS,
  RETRY_BASE_MS,
  STALE_AFTER_MS,
  createSnapshotStream,
  type EventSourceLike,
  type StreamDeps,
} from './snapshotStream'

class FakeEventSource implements EventSourceLike {
  listeners = new Map<string, ((event: MessageEvent<string>) => void)[]>()
  onerror: ((event: Event) => void) | null = null
  closed = false

  constructor(readonly url: string) {}

  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener])
  }

  close(): void {
    this.closed = true
  }

  emit(type: string, data: unknown): void {
    const event = { data: JSON.stringify(data) } as MessageEvent<string>
    for (const listener of this.listeners.get(type) ?? []) listener(event)
  }

  fail(): void {
    this.onerror?.(new Event('error'))
  }
}

function client(id: string, messagesIn: number): ClientInfo {
  return {
    client_id: id,
    protocol: 'http',
    address: '127.0.0.1',
    roles: ['producer'],
    first_seen: 0,
    last_seen: 0,
    active: true,
    messages_in: messagesIn,
    messages_out: 0,
    in_flight: 0,
  }
}

function snap(t: number, over: Partial<Snapshot> = {}): Snapshot {
  return {
    timestamp: t,
    messages_in_queue: 7,
    ready: 7,
    in_flight: 0,
    dead_lettered: 0,
    active_producers: 1,
    active_consumers: 0,
    rates: { in: 1, out: 0.5, acks: 0.5, redeliveries: 0 },
    oldest_unacked_age_s: 3.2,
    topics: [],
    clients: [],
    ...over,
  }
}

describe('createSnapshotStream', () => {
  let sources: FakeEventSource[]
  let fetchSnapshot: ReturnType<typeof vi.fn<() => Promise<Snapshot>>>
  let deps: StreamDeps
  let releases: (() => void)[]

  /** A stream under test with one user; released after the test. */
  function started() {
    const stream = createSnapshotStream(deps)
    releases.push(stream.acquire())
    return stream
  }

  beforeEach(() => {
    releases = []
    vi.useFakeTimers()
    sources = []
    fetchSnapshot = vi.fn<() => Promise<Snapshot>>()
    deps = {
      openEventSource: (url) => {
        const es = new FakeEventSource(url)
        sources.push(es)
        return es
      },
      fetchSnapshot,
      nowMs: () => Date.now(),
    }
  })

  afterEach(() => {
    for (const release of releases) release()
    vi.useRealTimers()
    setToken('')
  })

  const last = () => sources[sources.length - 1]!

  it('opens one stream for all users and closes it after the last one leaves', () => {
    const stream = createSnapshotStream(deps)
    const releaseA = stream.acquire()
    const releaseB = stream.acquire()
    expect(sources).toHaveLength(1)
    expect(sources[0]!.url).toBe('/events')
    expect(stream.status.value).toBe('connecting')
    releaseA()
    expect(sources[0]!.closed).toBe(false)
    releaseB()
    expect(sources[0]!.closed).toBe(true)
  })

  it('goes live with the first snapshot event', () => {
    const stream = started()
    last().emit('snapshot', snap(1000))
    expect(stream.status.value).toBe('live')
    expect(stream.data.value?.messages_in_queue).toBe(7)
    expect(stream.history.value).toHaveLength(1)
  })

  it('reports the server unreachable and retries with backoff until it answers', async () => {
    fetchSnapshot.mockRejectedValue(new ApiError(0, 'unreachable', 'Server unreachable'))
    const stream = started()
    last().emit('snapshot', snap(1000))
    last().fail()
    await vi.advanceTimersByTimeAsync(0)
    expect(stream.status.value).toBe('offline')
    expect(stream.error.value).toMatch(/unreachable/)
    expect(sources).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(RETRY_BASE_MS)
    expect(sources).toHaveLength(2)
    last().fail()
    await vi.advanceTimersByTimeAsync(RETRY_BASE_MS) // the second wait is twice as long
    expect(sources).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(RETRY_BASE_MS)
    expect(sources).toHaveLength(3)
    expect(stream.status.value).toBe('offline') // until data flows again
    last().emit('snapshot', snap(1010))
    expect(stream.status.value).toBe('live')
    expect(stream.error.value).toBeNull()
  })

  it('marks the outage as a gap in the history', async () => {
    fetchSnapshot.mockRejectedValue(new ApiError(0, 'unreachable', 'Server unreachable'))
    const stream = started()
    last().emit('snapshot', snap(1000))
    last().fail()
    await vi.advanceTimersByTimeAsync(0)
    expect(stream.history.value.map((p) => p.in)).toEqual([1, null])
  })

  it('treats a silent stream as dead', async () => {
    fetchSnapshot.mockRejectedValue(new ApiError(0, 'unreachable', 'Server unreachable'))
    const stream = started()
    last().emit('snapshot', snap(1000))
    await vi.advanceTimersByTimeAsync(STALE_AFTER_MS + 1)
    expect(sources[0]!.closed).toBe(true)
    expect(stream.status.value).toBe('offline')
  })

  it('polls /stats when the stream fails but the server answers', async () => {
    fetchSnapshot.mockResolvedValue(snap(2000, { messages_in_queue: 9 }))
    const stream = started()
    last().fail()
    await vi.advanceTimersByTimeAsync(0)
    expect(stream.status.value).toBe('live')
    expect(stream.data.value?.messages_in_queue).toBe(9)
  })

  it('asks for a token on 401 and reconnects with it', async () => {
    fetchSnapshot.mockRejectedValue(new ApiError(401, 'unauthorized', 'a bearer token is required'))
    const stream = started()
    last().fail()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(sources).toHaveLength(1) // no retry loop without a token
    expect(stream.status.value).toBe('connecting')
    setToken('s3cret token')
    await vi.advanceTimersByTimeAsync(0)
    expect(sources).toHaveLength(2)
    expect(last().url).toBe('/events?token=s3cret%20token')
    expect(auth.needed).toBe(false)
  })

  it('keeps five minutes of history', () => {
    const stream = started()
    for (let t = 0; t <= HISTORY_SECONDS + 60; t += 1) last().emit('snapshot', snap(1000 + t))
    const points = stream.history.value
    expect(points[points.length - 1]!.t - points[0]!.t).toBe(HISTORY_SECONDS)
  })

  it('derives per-client rates from successive counts', () => {
    const stream = createSnapshotStream(deps)
    stream.apply(snap(1000, { clients: [client('a', 0)] }))
    stream.apply(snap(1002, { clients: [client('a', 20)] }))
    expect(stream.clientRates.value.get('a')?.in).toBeCloseTo(10)
  })

  it('ignores events of a stream it already closed', async () => {
    fetchSnapshot.mockRejectedValue(new ApiError(0, 'unreachable', 'Server unreachable'))
    const stream = started()
    const first = last()
    first.fail()
    await vi.advanceTimersByTimeAsync(0)
    first.emit('snapshot', snap(1000))
    expect(stream.data.value).toBeNull()
    expect(stream.status.value).toBe('offline')
  })
})
