// Cross-process exclusion through proper-lockfile (`<file>.lock` directories).
import lockfile from "proper-lockfile";
import { open } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";

const lockStaleMs = 10_000;
const lockUpdateMs = 2_000;
const lockRetries = { retries: 200, factor: 1.3, minTimeout: 5, maxTimeout: 100, randomize: true };

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

/** Runs `critical` while holding the cross-process lock of `path` (the file is created if missing). */
export async function withFileLock<T>(path: string, critical: () => Promise<T>): Promise<T> {
  await ensureFile(path);
  const release = await lockfile.lock(path, { stale: lockStaleMs, update: lockUpdateMs, retries: lockRetries, onCompromised });
  try {
    return await critical();
  } finally {
    await release();
  }
}

/** Takes the lock of `path` for the life of the process, e.g. to keep two gateways off one data dir. */
export async function holdFileLock(path: string): Promise<() => Promise<void>> {
  await ensureFile(path);
  try {
    return await lockfile.lock(path, { stale: lockStaleMs, update: lockUpdateMs, retries: 0, onCompromised });
  } catch (error) {
    throw new Error(`${path} is locked by another running process (${(error as Error).message})`);
  }
}
