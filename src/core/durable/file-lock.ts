// Cross-process exclusion on the files several processes share (the accounts CSV, the pending file, the
// clients' queue and history, the port file) and on each process's own (one gateway per data dir, one
// process per bank).
//
// Correctness rests on a kernel lock: an open-file-description lock (fcntl F_OFD_SETLK, through
// fs-native-extensions, which ships its Linux build inside the npm package) on `<file>.lck`, a file that is
// never replaced, held for the whole read-modify-write. The kernel releases it only when its holder closes it
// or dies. So a paused holder (a stop-the-world GC, SIGSTOP, a paused VM, a slow disk) makes the others wait,
// however long, and never lets two writers in; and a dead holder's lock is free at once, with no staleness
// timer to wait out. The lock file holds its holder's pid, for the messages of those that wait.
//
// proper-lockfile's `<file>.lock` directory stays beside it as the visible lock protocol of the data dir's
// layout, taken inside the kernel lock. Every paynet process takes the kernel lock first, so a `.lock`
// directory met while holding the kernel lock was left by a process that died: it is removed, not waited for.
// Its staleness timer is set far beyond any pause, so that it never declares a paused holder's lock lost.
import lockfile from "proper-lockfile";
import { tryLock } from "fs-native-extensions";
import { mkdir, open, readFile, realpath, rm, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

/** How often a waiter tries again: from the first up to the last, doubling. */
const retryMs = { first: 2, last: 50 };
/** A waiter says who holds the lock after this long, and again every lockWaitReportEveryMs. */
const lockWaitReportAfterMs = 2_000;
const lockWaitReportEveryMs = 10_000;
/**
 * Waiting is bounded: a lock held this long means its holder is stuck, and the waiter gives up with an error
 * naming it (a bank's checkpoint then stops the bank: memory is ahead of the shared files; a restart recovers).
 */
const lockWaitMaxMs = 10 * 60_000;
/** Far beyond any pause: proper-lockfile would otherwise call a paused holder's lock compromised. */
const visibleLockStaleMs = 24 * 60 * 60_000;

export class LockWaitError extends Error {
  override readonly name = "LockWaitError";
}

/** Where a waiter reports that it is waiting; a role points it at its logger. */
let reportWait: (message: string, fields: { path: string; holderPid: number | null; waitedMs: number }) => void = (
  message,
) => {
  process.stderr.write(`paynet: ${message}\n`);
};

export function onLockWait(report: typeof reportWait): void {
  reportWait = report;
}

async function holderPid(lockPath: string): Promise<number | null> {
  const text = await readFile(lockPath, "utf8").catch(() => "");
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/** The kernel lock of `path`, held until the returned file is closed; null when `wait` is false and another holds it. */
async function kernelLock(path: string, wait: boolean): Promise<FileHandle | null> {
  const lockPath = `${path}.lck`;
  await mkdir(dirname(path), { recursive: true });
  // Opened for writing: a write lock needs a descriptor that may write.
  const handle = await open(lockPath, "a", 0o644);
  const startedMs = Date.now();
  let delayMs = retryMs.first;
  let reportedAtMs = startedMs + lockWaitReportAfterMs - lockWaitReportEveryMs;
  try {
    while (!tryLock(handle.fd)) {
      if (!wait) {
        await handle.close();
        return null;
      }
      const waitedMs = Date.now() - startedMs;
      if (waitedMs >= lockWaitMaxMs) {
        throw new LockWaitError(
          `${path}: waited ${Math.round(waitedMs / 1000)} s for its lock, held by pid ${(await holderPid(lockPath)) ?? "unknown"}; is that process stuck?`,
        );
      }
      if (Date.now() - reportedAtMs >= lockWaitReportEveryMs) {
        reportedAtMs = Date.now();
        const pid = await holderPid(lockPath);
        reportWait(
          `waiting ${(waitedMs / 1000).toFixed(1)} s for the lock of ${path}, held by pid ${pid ?? "unknown"}`,
          { path, holderPid: pid, waitedMs },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, retryMs.last);
    }
    await handle.truncate(0);
    await handle.write(`${process.pid}\n`);
    return handle;
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

function onCompromised(error: Error): void {
  // Not reachable by a pause (visibleLockStaleMs); only by someone removing the directory by hand. The kernel
  // lock still excludes every paynet process, so this is reported, not fatal.
  process.stderr.write(
    `paynet: the lock directory of a held lock changed under it (${error.message}); the kernel lock still holds\n`,
  );
}

/** proper-lockfile's `<file>.lock` directory, taken while the kernel lock is held (a leftover one is a dead process's). */
async function visibleLock(path: string): Promise<() => Promise<void>> {
  // proper-lockfile resolves the file's real path: it must exist.
  await (await open(path, "a")).close();
  const options = { stale: visibleLockStaleMs, retries: 0, onCompromised };
  try {
    return await lockfile.lock(path, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ELOCKED") throw error;
    await rm(`${await realpath(path)}.lock`, { recursive: true, force: true });
    return lockfile.lock(path, options);
  }
}

/** Runs `critical` holding the lock of `path` (the file is created if missing), waiting for it as long as it takes, up to lockWaitMaxMs. */
export async function withFileLock<T>(path: string, critical: () => Promise<T>): Promise<T> {
  const handle = (await kernelLock(path, true))!;
  try {
    const release = await visibleLock(path);
    try {
      return await critical();
    } finally {
      await release().catch(() => undefined);
    }
  } finally {
    await handle.close();
  }
}

/** A lock held for its life by another live process: the role says who that is (another bank, another gateway). */
export class LockHeldError extends Error {
  readonly path: string;
  /** The holder's pid when it left it beside the lock, else null. */
  readonly pid: number | null;
  constructor(path: string, pid: number | null) {
    super(`${path} is locked by another running process${pid === null ? "" : ` (pid ${pid})`}`);
    this.path = path;
    this.pid = pid;
  }
}

/**
 * Takes the lock of `path` for the life of the process, e.g. to keep two gateways off one data dir. Fails at
 * once, naming the holder's pid, if a live process holds it; a dead one's is free at once.
 */
export async function holdFileLock(path: string): Promise<() => Promise<void>> {
  const handle = await kernelLock(path, false);
  if (handle === null) {
    throw new LockHeldError(path, await holderPid(`${path}.lck`));
  }
  try {
    const release = await visibleLock(path);
    return async () => {
      await release().catch(() => undefined);
      await handle.close();
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}
