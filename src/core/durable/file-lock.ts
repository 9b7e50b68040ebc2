// Cross-process exclusion through proper-lockfile (`<file>.lock` directories).
import lockfile from "proper-lockfile";
import { mkdir, open, realpath, stat } from "node:fs/promises";
import { dirname } from "node:path";

// A lock whose owner died (SIGKILL, power loss) is taken over once its mtime is this old; live owners
// refresh it every lockUpdateMs, so only an event loop stalled for longer could lose it (then we exit).
const lockStaleMs = 4_000;
const lockUpdateMs = 1_000;
/** Waits up to about 15 s: longer than a dead owner's lock takes to go stale. */
const lockRetries = { retries: 200, factor: 1.3, minTimeout: 5, maxTimeout: 100, randomize: true };
const lifetimeLockRetries = { retries: 30, factor: 1, minTimeout: 500, maxTimeout: 500 };

async function ensureFile(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, "a");
  await handle.close();
}

function onCompromised(error: Error): void {
  // Another process may now be writing the same file: stop at once rather than interleave writes.
  process.stderr.write(`paynet: lock compromised (${error.message}); exiting\n`);
  process.exit(70);
}

/**
 * Proves, just before a write becomes visible, that the lock is still ours. A holder stalled past
 * lockStaleMs (SIGSTOP, a paused VM, swap) may have lost it to another process, whose newer write a
 * rename of ours would silently undo: then the write is refused instead.
 */
export type LockGuard = () => Promise<void>;

/** Runs `critical` while holding the cross-process lock of `path` (the file is created if missing). */
export async function withFileLock<T>(path: string, critical: (stillHeld: LockGuard) => Promise<T>): Promise<T> {
  await ensureFile(path);
  const release = await lockfile.lock(path, { stale: lockStaleMs, update: lockUpdateMs, retries: lockRetries, onCompromised });
  const lockDirectory = `${await realpath(path)}.lock`;
  const owned = await stat(lockDirectory);
  const stillHeld: LockGuard = async () => {
    const now = await stat(lockDirectory).catch(() => null);
    if (now === null || now.ino !== owned.ino || now.dev !== owned.dev) {
      throw new Error(`lost the lock of ${path} while stalled (another process took it over); refusing to overwrite its write`);
    }
  };
  try {
    return await critical(stillHeld);
  } finally {
    await release().catch(() => undefined);
  }
}

/**
 * Takes the lock of `path` for the life of the process, e.g. to keep two gateways off one data dir.
 * Waits for the lock of a process that died to go stale; fails if its owner is alive.
 */
export async function holdFileLock(path: string): Promise<() => Promise<void>> {
  await ensureFile(path);
  try {
    return await lockfile.lock(path, { stale: lockStaleMs, update: lockUpdateMs, retries: lifetimeLockRetries, onCompromised });
  } catch (error) {
    throw new Error(`${path} is locked by another running process (${(error as Error).message})`);
  }
}
