import { describe, expect, it } from 'vitest'
import {
  decodeBody,
  formatAgo,
  formatBytes,
  formatCount,
  formatDuration,
  formatRate,
  formatTimestamp,
  plural,
  preview,
} from './format'

describe('formatCount', () => {
  it('groups thousands and goes compact from 100,000', () => {
    expect(formatCount(0)).toBe('0')
    expect(formatCount(7)).toBe('7')
    expect(formatCount(1234)).toBe('1,234')
    expect(formatCount(99_999)).toBe('99,999')
    expect(formatCount(1_250_000)).toBe('1.3M')
  })

  it('shows a dash for missing values', () => {
    expect(formatCount(null)).toBe('—')
    expect(formatCount(undefined)).toBe('—')
    expect(formatCount(Number.NaN)).toBe('—')
  })
})

describe('formatRate', () => {
  it('keeps two significant digits for small rates', () => {
    expect(formatRate(0)).toBe('0/s')
    expect(formatRate(0.25)).toBe('0.25/s')
    expect(formatRate(3.46)).toBe('3.5/s')
    expect(formatRate(420.4)).toBe('420/s')
    expect(formatRate(1520)).toBe('1.5k/s')
    expect(formatRate(null)).toBe('—')
  })
})

describe('formatDuration', () => {
  it('uses one decimal under ten seconds', () => {
    expect(formatDuration(0.44)).toBe('0.4 s')
    expect(formatDuration(3.2)).toBe('3.2 s')
  })

  it('uses at most two units', () => {
    expect(formatDuration(12)).toBe('12 s')
    expect(formatDuration(60)).toBe('1 min')
    expect(formatDuration(252)).toBe('4 min 12 s')
    expect(formatDuration(3600 * 3 + 300 + 7)).toBe('3 h 5 min')
    expect(formatDuration(86_400 * 2 + 3600 * 4)).toBe('2 d 4 h')
  })

  it('shows a dash when there is nothing to measure', () => {
    expect(formatDuration(null)).toBe('—')
  })

  it('signs negative durations', () => {
    expect(formatDuration(-75)).toBe('-1 min 15 s')
  })
})

describe('formatAgo', () => {
  it('counts back from now in the largest whole unit', () => {
    expect(formatAgo(1000, 1001)).toBe('just now')
    expect(formatAgo(1000, 1012.5)).toBe('12 s ago')
    expect(formatAgo(1000, 1000 + 240)).toBe('4 min ago')
    expect(formatAgo(1000, 1000 + 7200)).toBe('2 h ago')
    expect(formatAgo(1000, 1000 + 86_400 * 3)).toBe('3 d ago')
    expect(formatAgo(0, 1000)).toBe('never')
  })
})

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(700)).toBe('700 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(64 * 1024 * 1024)).toBe('64 MiB')
  })
})

describe('formatTimestamp', () => {
  it('shows only the time for today and the date otherwise', () => {
    const now = new Date(2025, 10, 27, 15, 0, 0).getTime()
    expect(formatTimestamp(new Date(2025, 10, 27, 14, 3, 22).getTime(), now)).toBe('14:03:22')
    expect(formatTimestamp(new Date(2025, 10, 26, 9, 5, 1).getTime(), now)).toBe('2025-11-26 09:05:01')
    expect(formatTimestamp(null, now)).toBe('—')
  })
})

describe('decodeBody', () => {
  it('returns text bodies as they are', () => {
    expect(decodeBody({ message: 'Hello World' })).toEqual({ text: 'Hello World', binary: false })
  })

  it('decodes base64 that is UTF-8 text', () => {
    expect(decodeBody({ message: btoa('héllo'.normalize()), encoding: 'base64' }).binary).toBe(true)
    const utf8 = btoa(String.fromCharCode(...new TextEncoder().encode('héllo')))
    expect(decodeBody({ message: utf8, encoding: 'base64' })).toEqual({ text: 'héllo', binary: false })
  })

  it('shows other bytes as hex', () => {
    const raw = btoa(String.fromCharCode(0xff, 0x00, 0x10))
    expect(decodeBody({ message: raw, encoding: 'base64' })).toEqual({ text: 'ff 00 10', binary: true })
  })

  it('treats a missing body as empty', () => {
    expect(decodeBody({ message: null })).toEqual({ text: '', binary: false })
  })
})

describe('preview and plural', () => {
  it('puts a body on one line and cuts it', () => {
    expect(preview('a\n  b\tc')).toBe('a b c')
    expect(preview('x'.repeat(10), 5)).toBe('xxxx…')
  })

  it('agrees the noun with the count', () => {
    expect(plural(1, 'message')).toBe('1 message')
    expect(plural(3, 'message')).toBe('3 messages')
    expect(plural(0, 'dead letter')).toBe('0 dead letters')
  })
})
