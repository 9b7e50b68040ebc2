// Atomic, durable file writes: temp file, fsync, rename, fsync the directory; and fsynced appends. Both go
// through a Disk (disk.ts): the real file system, or in power-loss tests a simulated one.
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import { crashPoint, isCrashPointArmed, type CrashPointName } from "../faults/crash.js";
import { fsyncSeconds } from "../observability/metrics.js";
import { isMissing, nodeDisk, type Disk, type DiskFile } from "./disk.js";

export interface AtomicWriteOptions {
  mode?: number;
  /** Names the crash point between writing the temp file and renaming it. */
  crashName?: CrashPointName;
  disk?: Disk;
}

/** Replaces `path` with `data` so that a crash or a power loss at any moment leaves either the old or the new content. */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const disk = options.disk ?? nodeDisk;
  const directory = dirname(path);
  const stopTimer = fsyncSeconds.startTimer({ file: basename(path) });
  await disk.mkdir(directory);
  const temp = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const file = await disk.open(temp, "w", options.mode ?? 0o644);
  try {
    await file.write(data);
    await file.sync();
  } catch (error) {
    await file.close();
    await disk.remove(temp);
    throw error;
  }
  await file.close();
  if (options.crashName !== undefined) crashPoint(options.crashName);
  await disk.rename(temp, path);
  await disk.syncDirectory(directory);
  stopTimer();
}

/**
 * An append-only file kept open between appends (opening and closing it for each one showed in profiles).
 * Each append is fsynced before it resolves; the caller serializes appends. After the file is replaced
 * (a compaction renames a new file over it), reopen() points the handle at the new file.
 */
export class AppendOnlyFile {
  readonly path: string;
  readonly #disk: Disk;
  readonly #tornCrashName: CrashPointName | undefined;
  readonly #metricsName: string;
  #file: DiskFile | null = null;

  /** `metricsName` labels its fsync timings (default: the file's name). */
  constructor(path: string, options: { tornCrashName?: CrashPointName; metricsName?: string; disk?: Disk } = {}) {
    this.path = path;
    this.#disk = options.disk ?? nodeDisk;
    this.#tornCrashName = options.tornCrashName;
    this.#metricsName = options.metricsName ?? basename(path);
  }

  async append(text: string): Promise<void> {
    const stopTimer = fsyncSeconds.startTimer({ file: this.#metricsName });
    if (this.#file === null) {
      await this.#disk.mkdir(dirname(this.path));
      this.#file = await this.#disk.open(this.path, "a", 0o644);
      // The name of a file just created must be durable too, or a crash could lose the whole file.
      await this.#disk.syncDirectory(dirname(this.path));
    }
    if (this.#tornCrashName !== undefined && isCrashPointArmed(this.#tornCrashName)) {
      await this.#file.write(text.slice(0, Math.max(1, Math.floor(text.length / 2))));
      await this.#file.datasync();
    }
    if (this.#tornCrashName !== undefined) crashPoint(this.#tornCrashName);
    await this.#file.write(text);
    await this.#file.datasync();
    stopTimer();
  }

  async reopen(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    const file = this.#file;
    this.#file = null;
    await file?.close();
  }
}

/**
 * Cuts off a final line without its newline: an append that a power loss cut short (its fsync never
 * returned, so nothing was answered on it). Appending after it would glue the next line to it. Reads only the
 * file's end. Returns the bytes cut (0 when the file ends with a newline, is empty or is missing).
 */
export async function cutTornLastLine(path: string, disk: Disk = nodeDisk): Promise<number> {
  let file: DiskFile;
  try {
    file = await disk.open(path, "r");
  } catch (error) {
    if (isMissing(error)) return 0;
    throw error;
  }
  let keptBytes = 0;
  let sizeBytes: number;
  try {
    sizeBytes = await file.sizeBytes();
    const chunk = Buffer.alloc(4_096);
    for (let end = sizeBytes; end > 0;) {
      const start = Math.max(0, end - chunk.length);
      const bytesRead = await file.read(chunk, 0, end - start, start);
      const newline = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (newline !== -1) {
        keptBytes = start + newline + 1;
        break;
      }
      end = start;
    }
  } finally {
    await file.close();
  }
  if (keptBytes === sizeBytes) return 0;
  await disk.truncate(path, keptBytes);
  return sizeBytes - keptBytes;
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
export async function removeStaleTempFiles(directory: string, disk: Disk = nodeDisk): Promise<string[]> {
  const names = await disk.readdir(directory).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const match = tempNamePattern.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    await disk.remove(join(directory, name));
    removed.push(name);
  }
  return removed;
}
