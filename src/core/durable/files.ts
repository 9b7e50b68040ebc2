// Atomic, durable file writes: temp file, fsync, rename, fsync the directory.
import { open, rename, mkdir, rm, readdir, type FileHandle } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import { crashPoint, isCrashPointArmed, type CrashPointName } from "../faults/crash.js";
import { fsyncSeconds } from "../observability/metrics.js";

/** Makes a directory's entries (a created, renamed or deleted name) durable. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either the old or the new content.
 * `crashName` names the crash point between writing the temp file and renaming it.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { mode?: number; crashName?: CrashPointName; beforeRename?: () => Promise<void> } = {}): Promise<void> {
  const directory = dirname(path);
  const stopTimer = fsyncSeconds.startTimer({ file: basename(path) });
  await mkdir(directory, { recursive: true });
  const temp = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "w", options.mode ?? 0o644);
  try {
    await handle.writeFile(data, typeof data === "string" ? "utf8" : undefined);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  if (options.crashName !== undefined) crashPoint(options.crashName);
  try {
    await options.beforeRename?.();
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await rename(temp, path);
  await fsyncDirectory(directory);
  stopTimer();
}

/**
 * An append-only file kept open between appends (opening and closing it for each one showed in profiles).
 * Each append is fsynced before it resolves; the caller serializes appends. After the file is replaced
 * (a compaction renames a new file over it), reopen() points the handle at the new file.
 */
export class AppendOnlyFile {
  readonly path: string;
  readonly #tornCrashName: CrashPointName | undefined;
  readonly #metricsName: string;
  #handle: FileHandle | null = null;

  /** `metricsName` labels its fsync timings (default: the file's name). */
  constructor(path: string, options: { tornCrashName?: CrashPointName; metricsName?: string } = {}) {
    this.path = path;
    this.#tornCrashName = options.tornCrashName;
    this.#metricsName = options.metricsName ?? basename(path);
  }

  async append(text: string): Promise<void> {
    const stopTimer = fsyncSeconds.startTimer({ file: this.#metricsName });
    if (this.#handle === null) {
      await mkdir(dirname(this.path), { recursive: true });
      this.#handle = await open(this.path, "a", 0o644);
      // The name of a file just created must be durable too, or a crash could lose the whole file.
      await fsyncDirectory(dirname(this.path));
    }
    if (this.#tornCrashName !== undefined && isCrashPointArmed(this.#tornCrashName)) {
      await this.#handle.write(text.slice(0, Math.max(1, Math.floor(text.length / 2))));
      await this.#handle.datasync();
    }
    if (this.#tornCrashName !== undefined) crashPoint(this.#tornCrashName);
    await this.#handle.write(text);
    await this.#handle.datasync();
    stopTimer();
  }

  async reopen(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = null;
    await handle?.close();
  }
}

const tempNamePattern = /^\..+\.([0-9]+)\.[0-9a-f]{12}\.tmp$/;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes temp files left by a process that died between writing and renaming them. Files of live
 * processes are kept: another process sharing the directory may be about to rename its own.
 */
export async function removeStaleTempFiles(directory: string): Promise<string[]> {
  const names = await readdir(directory).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const match = tempNamePattern.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    await rm(join(directory, name), { force: true });
    removed.push(name);
  }
  return removed;
}
