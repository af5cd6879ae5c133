/** Formatting for numbers, rates, durations, times and message bodies. Pure functions. */
import type { Body } from '@/api/types'

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })

/** 1234 → "1,234"; from 100,000 on, compact: 1_250_000 → "1.3M". */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return Math.abs(n) < 100_000 ? grouped.format(n) : compact.format(n)
}

/** Messages per second: 0 → "0/s", 0.25 → "0.25/s", 3.46 → "3.5/s", 1520 → "1.5k/s". */
export function formatRate(r: number | null | undefined): string {
  if (r === null || r === undefined || Number.isNaN(r)) return '—'
  if (r === 0) return '0/s'
  const a = Math.abs(r)
  if (a < 1) return `${r.toFixed(2)}/s`
  if (a < 10) return `${r.toFixed(1)}/s`
  if (a < 1000) return `${Math.round(r)}/s`
  return `${compact.format(r).toLowerCase()}/s`
}

/**
 * A duration in seconds, two units at most: 0.4 → "0.4 s", 12 → "12 s", 252 → "4 min 12 s",
 * 11100 → "3 h 5 min", 187200 → "2 d 4 h"; null → "—".
 */
export function formatDuration(s: number | null | undefined): string {
  if (s === null || s === undefined || Number.isNaN(s)) return '—'
  if (s < 0) return `-${formatDuration(-s)}`
  if (s < 10) return `${(Math.floor(s * 10) / 10).toFixed(1)} s`
  if (s < 60) return `${Math.floor(s)} s`
  const steps: [number, string][] = [
    [86_400, 'd'],
    [3_600, 'h'],
    [60, 'min'],
    [1, 's'],
  ]
  const whole = Math.floor(s)
  const first = steps.findIndex(([size]) => whole >= size)
  const [size, name] = steps[first] ?? [1, 's']
  const major = Math.floor(whole / size)
  const next = steps[first + 1]
  if (!next) return `${major} ${name}`
  const minor = Math.floor((whole - major * size) / next[0])
  return minor > 0 ? `${major} ${name} ${minor} ${next[1]}` : `${major} ${name}`
}

/** How long ago, from two epoch-second times: "just now", "12 s ago", "4 min ago". */
export function formatAgo(then: number | null | undefined, now: number): string {
  if (then === null || then === undefined || then <= 0) return 'never'
  const d = now - then
  if (d < 2) return 'just now'
  if (d < 60) return `${Math.floor(d)} s ago`
  if (d < 3600) return `${Math.floor(d / 60)} min ago`
  if (d < 86_400) return `${Math.floor(d / 3600)} h ago`
  return `${Math.floor(d / 86_400)} d ago`
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** 700 → "700 B", 1536 → "1.5 KiB". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  let value = n
  let i = 0
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024
    i += 1
  }
  return i === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[i]}`
}

function pad(n: number): string {
  return String(n).padStart(2, '0')
}

/** Epoch milliseconds as local time: "14:03:22" today, "2025-11-27 14:03:22" otherwise. */
export function formatTimestamp(ms: number | null | undefined, nowMs: number = Date.now()): string {
  if (ms === null || ms === undefined) return '—'
  const d = new Date(ms)
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  const today = new Date(nowMs)
  if (d.toDateString() === today.toDateString()) return time
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`
}

export interface DecodedBody {
  text: string
  binary: boolean
}

/** A message body for display: text as is; base64 decoded to text when it is UTF-8, else hex. */
export function decodeBody(body: Body | { message: string | null; encoding?: string }): DecodedBody {
  if (body.message === null) return { text: '', binary: false }
  if (body.encoding !== 'base64') return { text: body.message, binary: false }
  let bytes: Uint8Array
  try {
    bytes = Uint8Array.from(atob(body.message), (c) => c.charCodeAt(0))
  } catch {
    return { text: body.message, binary: true }
  }
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false }
  } catch {
    const hex = Array.from(bytes.slice(0, 256), (b) => b.toString(16).padStart(2, '0')).join(' ')
    return { text: bytes.length > 256 ? `${hex} …` : hex, binary: true }
  }
}

/** At most `max` characters on one line, with an ellipsis when cut. */
export function preview(text: string, max = 120): string {
  const line = text.replace(/\s+/g, ' ').trim()
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

/** Plural-aware count: plural(1, "message") → "1 message". */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : many}`
}
