// Timers counted in turns of the event loop instead of milliseconds, installed by the power-loss workers only.
// The coordinator waits on setTimeout (its retry delay, its reply wait); on the wall clock those waits race
// against the simulated disks' flushes and the network's hops (setImmediate), and a schedule then does
// something else on a busy machine than on an idle one. Counted in turns, each of a schedule's timers fires
// at the same place among its own immediates every time, however fast the machine and whatever the other
// schedules in the thread do: a seed replays exactly.
const wallSetTimeout = globalThis.setTimeout;
const wallClearTimeout = globalThis.clearTimeout;

/** Turns of the event loop that stand for one millisecond. */
export const turnsPerMs = 8;

/** A timer that keeps nothing alive: the turns it counts are immediates, each queued by the last. */
class TurnTimer {
  cancelled = false;

  unref(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  hasRef(): boolean {
    return false;
  }
}

function afterTurns(turns: number, timer: TurnTimer, fire: () => void): void {
  if (timer.cancelled) return;
  if (turns <= 0) return fire();
  setImmediate(() => afterTurns(turns - 1, timer, fire));
}

/** Replaces setTimeout and clearTimeout of this thread (a worker's: the process's main thread keeps its own). */
export function installTurnTimers(): void {
  const setTimeoutInTurns = (callback: (...args: unknown[]) => void, delayMs = 0, ...args: unknown[]): TurnTimer => {
    const timer = new TurnTimer();
    afterTurns(1 + Math.ceil(Math.max(0, delayMs) * turnsPerMs), timer, () => callback(...args));
    return timer;
  };
  globalThis.setTimeout = setTimeoutInTurns as unknown as typeof globalThis.setTimeout;
  globalThis.clearTimeout = (timer: unknown) => {
    if (timer instanceof TurnTimer) timer.cancelled = true;
    else wallClearTimeout(timer as Parameters<typeof wallClearTimeout>[0]);
  };
}

/** A wall-clock timer whatever is installed: for a watchdog, which must fire when nothing else moves. */
export function wallClockTimeout(callback: () => void, delayMs: number): () => void {
  const timer = wallSetTimeout(callback, delayMs);
  return () => wallClearTimeout(timer);
}
