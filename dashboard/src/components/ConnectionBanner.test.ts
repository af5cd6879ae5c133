import { afterEach, describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import type { Snapshot } from '@/api/types'
import { createSnapshotStream, type SnapshotStream } from '@/composables/snapshotStream'
import { provideSnapshotStream } from '@/composables/useSnapshot'
import ConnectionBanner from './ConnectionBanner.vue'

function idleStream(): SnapshotStream {
  // A stream whose browser pieces never answer: the test sets its state directly.
  return createSnapshotStream({
    openEventSource: () => ({ addEventListener: () => undefined, onerror: null, close: () => undefined }),
    fetchSnapshot: () => new Promise<Snapshot>(() => undefined),
    nowMs: () => Date.now(),
  })
}

describe('ConnectionBanner', () => {
  afterEach(() => provideSnapshotStream(null))

  it('says the server is unreachable only while offline', async () => {
    const stream = idleStream()
    provideSnapshotStream(stream)
    const wrapper = mount(ConnectionBanner)
    expect(wrapper.find('[data-testid="connection-status"]').exists()).toBe(false)
    stream.status.value = 'offline'
    await wrapper.vm.$nextTick()
    const banner = wrapper.get('[data-testid="connection-status"]')
    expect(banner.text()).toContain('Server unreachable — retrying')
    expect(banner.attributes('role')).toBe('alert')
    stream.status.value = 'live'
    await wrapper.vm.$nextTick()
    expect(wrapper.find('[data-testid="connection-status"]').exists()).toBe(false)
    wrapper.unmount()
  })
})
