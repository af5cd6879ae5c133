import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope } from 'vue'
import { ApiError } from '@/api/client'
import { usePolled } from './usePolled'

describe('usePolled', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('fetches at once, then every interval, and stops with its scope', async () => {
    let n = 0
    const fetcher = vi.fn(async () => ++n)
    const scope = effectScope()
    const polled = scope.run(() => usePolled(fetcher, { intervalMs: 1000 }))!
    expect(polled.status.value).toBe('loading')
    await vi.advanceTimersByTimeAsync(0)
    expect(polled.data.value).toBe(1)
    expect(polled.status.value).toBe('ready')
    await vi.advanceTimersByTimeAsync(1000)
    expect(polled.data.value).toBe(2)
    scope.stop()
    await vi.advanceTimersByTimeAsync(5000)
    expect(fetcher).toHaveBeenCalledTimes(2)
  })

  it('keeps the last data and says what went wrong', async () => {
    const fetcher = vi
      .fn<(signal: AbortSignal) => Promise<string>>()
      .mockResolvedValueOnce('first')
      .mockRejectedValueOnce(new ApiError(409, 'conflict', 'the group moved'))
    const scope = effectScope()
    const polled = scope.run(() => usePolled(fetcher, { intervalMs: 1000 }))!
    await vi.advanceTimersByTimeAsync(1000)
    expect(polled.data.value).toBe('first')
    expect(polled.status.value).toBe('error')
    expect(polled.error.value).toBe('the group moved')
    scope.stop()
  })
})
