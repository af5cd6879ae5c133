/**
 * The gateway's JSON, one type per shape (docs/http-api.md). The only file that knows the
 * wire format: views and composables import from here and never re-declare a field.
 * Times: `timestamp`, `*_seen`, `deadline`, `last_active`, `lease_start` and
 * `dead_lettered_at` are epoch seconds; `*_ms` fields and `timestamp` of a message are
 * epoch milliseconds; `*_s` fields are durations in seconds.
 */

/** Every error the gateway answers: `{"error": {"code", "message"}}`. */
export interface ErrorBody {
  error: { code: string; message: string; retriable?: boolean }
}

export interface TopicConfig {
  partitions: number
  retention_s: number | null
  retention_bytes: number | null
  overflow: 'refuse' | 'drop_oldest'
  max_message_bytes: number | null
  visibility_timeout_s: number | null
  max_deliveries: number | null
  dead_letter: boolean
  backoff_s: number[]
}

export interface GroupInfo {
  topic: string
  name: string
  ready: number
  in_flight: number
  dead_lettered: number
  /** Messages not yet acked (ready + in flight). */
  lag: number
  oldest_unacked_age_s: number | null
  /** Per partition (JSON object keys are strings). */
  ack_floor: Record<string, number>
  consumers: number
  last_active: number
  rate_out: number
  redeliveries: number
}

export interface TopicInfo {
  name: string
  partitions: number
  /** Retained messages. */
  messages: number
  messages_in_queue: number
  bytes: number
  in_flight: number
  dead_lettered: number
  oldest_timestamp_ms: number | null
  rate_in: number
  rate_out: number
  start_offsets: number[]
  end_offsets: number[]
  config: TopicConfig
  damaged: Record<string, unknown>[]
  groups: GroupInfo[]
}

export type ClientProtocol = 'http' | 'native'
export type ClientRole = 'producer' | 'consumer' | 'admin'

export interface ClientInfo {
  client_id: string
  protocol: ClientProtocol | string
  address: string
  roles: (ClientRole | string)[]
  first_seen: number
  last_seen: number
  active: boolean
  messages_in: number
  messages_out: number
  in_flight: number
}

export interface Rates {
  in: number
  out: number
  acks: number
  redeliveries: number
}

/** GET /stats, GET /monitoring and every `snapshot` event of GET /events. */
export interface Snapshot {
  timestamp: number
  messages_in_queue: number
  ready: number
  in_flight: number
  dead_lettered: number
  active_producers: number
  active_consumers: number
  rates: Rates
  oldest_unacked_age_s: number | null
  topics: TopicInfo[]
  clients: ClientInfo[]
}

/** A message body as JSON carries it: text, or base64 when the bytes are not UTF-8. */
export interface Body {
  message: string
  encoding?: 'base64'
}

/** A browsed (peeked) message: GET /topics/{topic}/messages. */
export interface StoredMessage extends Body {
  topic: string
  partition: number
  offset: number
  key: string | null
  headers: Record<string, unknown> | null
  /** Epoch milliseconds. */
  timestamp: number
}

export interface BrowseResult {
  messages: StoredMessage[]
  next_offset: number | null
}

export interface BrowseQuery {
  partition?: number
  offset?: number
  key?: string
  text?: string
  limit?: number
}

/** POST /send/{topic}, single message. */
export interface SendRequest {
  message: string
  key?: string
  headers?: Record<string, unknown>
  delay?: number
}

export interface SendResult {
  status: string
  message: unknown
  topic: string
  partition: number
  offset: number
  created: boolean
  duplicate: boolean
}

export interface LeaseInfo {
  partition: number
  offset: number
  consumer: string
  delivery_count: number
  /** Epoch seconds. */
  deadline: number
}

export interface LeasesResult {
  leases: LeaseInfo[]
}

export interface GroupsResult {
  groups: GroupInfo[]
}

/** POST /topics/{topic}/groups/{group}/seek: one of offset or timestamp_ms. */
export interface SeekRequest {
  offset?: number
  timestamp_ms?: number
  partition?: number
}

export type DeliveryOutcome = 'acked' | 'nacked' | 'expired' | 'dead_lettered' | 'leased'

export interface HistoryEntry {
  attempt: number
  consumer: string
  lease_start: number
  outcome: DeliveryOutcome | string
}

export interface DeadLetter {
  /** Stable: `${partition}:${offset}`. */
  id: string
  topic: string
  group: string
  partition: number
  offset: number
  reason: string
  delivery_count: number
  dead_lettered_at: number
  redrives: number
  message: string | null
  encoding?: 'base64'
  history: HistoryEntry[]
}

export interface DeadLettersResult {
  dead_letters: DeadLetter[]
}

/** POST /topics/{topic}/groups/{group}/redrive: ids, a reason filter, or `{}` for all. */
export interface RedriveRequest {
  ids?: string[]
  reason_contains?: string
}

export interface RedriveResult {
  redriven: number
}
