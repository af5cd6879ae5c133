import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import StatCard from './StatCard.vue'

describe('StatCard', () => {
  it('shows the value under its test id with label and hint', () => {
    const wrapper = mount(StatCard, {
      props: { label: 'Messages in the queue', value: '7', testid: 'messages-in-queue', hint: '7 ready' },
    })
    expect(wrapper.get('[data-testid="messages-in-queue"]').text()).toBe('7')
    expect(wrapper.text()).toContain('Messages in the queue')
    expect(wrapper.text()).toContain('7 ready')
    expect(wrapper.classes()).toContain('tone-default')
  })

  it('becomes a link when given a target', () => {
    const wrapper = mount(StatCard, {
      props: { label: 'Dead-lettered', value: '2', testid: 'dead-lettered', tone: 'bad', to: '/dead-letters' },
      global: { stubs: { RouterLink: { props: ['to'], template: '<a :href="to"><slot /></a>' } } },
    })
    expect(wrapper.element.tagName).toBe('A')
    expect(wrapper.attributes('href')).toBe('/dead-letters')
    expect(wrapper.classes()).toContain('tone-bad')
  })
})
