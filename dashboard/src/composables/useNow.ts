/** useNow(ms): the current time in epoch seconds, ticking every `ms`; stops on unmount. */
import { getCurrentScope, onScopeDispose, ref } from 'vue'

export function useNow(intervalMs = 250) {
  const now = ref(Date.now() / 1000)
  const timer = setInterval(() => {
    now.value = Date.now() / 1000
  }, intervalMs)
  if (getCurrentScope()) onScopeDispose(() => clearInterval(timer))
  return now
}
