// The disk under the file adapters: every read, write, fsync, rename and lock of the stores' files goes
// through a Disk, so that a test can put the adapters on a simulated disk that loses power
// (src/core/testing/simulated-file-system.ts: only what was fsynced survives, and a directory's names only
// once the directory was fsynced). Production uses `nodeDisk`, the real file system; a store takes its Disk
// when it opens and keeps it, so a process that "dies" in a test never writes to the disk of its successor.
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, truncate, type FileHandle } from "node:fs/promises";
import { holdFileLock, withFileLock } from "./file-lock.js";

/** An open file. Writes go to its end: a file is opened to append ("a"), or created or emptied to be written ("w"). */
export interface DiskFile {
  write(data: string | Uint8Array): Promise<void>;
  /** Reads into buffer[offset, offset + length) from byte `position`; resolves to the bytes read (0 at the end). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  sizeBytes(): Promise<number>;
  /** fsync: the file's data and metadata durable. */
  sync(): Promise<void>;
  /** fdatasync: the file's data (and its length) durable. */
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export interface Disk {
  /** "r" to read (ENOENT if missing), "a" to append (created if missing), "w" to write from empty (created if missing). */
  open(path: string, flags: "r" | "a" | "w", mode?: number): Promise<DiskFile>;
  /** The whole file; rejects with an ENOENT error when it is missing, as node:fs does. */
  readFile(path: string): Promise<Buffer>;
  rename(fromPath: string, toPath: string): Promise<void>;
  /** Removes a file; nothing when it is missing. */
  remove(path: string): Promise<void>;
  truncate(path: string, lengthBytes: number): Promise<void>;
  /** The names in a directory; rejects with ENOENT when it is missing. */
  readdir(directory: string): Promise<string[]>;
  /** Removes an empty directory; nothing when it is missing. */
  removeDirectory(directory: string): Promise<void>;
  /** Creates a directory and its parents; nothing when it exists. */
  mkdir(directory: string): Promise<void>;
  /** A file's length; rejects with ENOENT when it is missing. */
  sizeBytes(path: string): Promise<number>;
  /** Makes a directory's entries (a created, renamed or removed name) durable. */
  syncDirectory(directory: string): Promise<void>;
  /** Runs `critical` holding the cross-process lock of `path` (durable/file-lock.ts). */
  withLock<T>(path: string, critical: () => Promise<T>): Promise<T>;
  /** Takes the lock of `path` for the life of the process; resolves to its release. */
  holdLock(path: string): Promise<() => Promise<void>>;
}

class NodeDiskFile implements DiskFile {
  readonly #handle: FileHandle;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  async write(data: string | Uint8Array): Promise<void> {
    const { bytesWritten } =
      typeof data === "string" ? await this.#handle.write(data, null, "utf8") : await this.#handle.write(data);
    const bytes = typeof data === "string" ? Buffer.byteLength(data, "utf8") : data.byteLength;
    // A regular file takes the whole write unless the disk is full; a short one is finished, not lost.
    if (bytesWritten < bytes)
      await this.#writeAll((typeof data === "string" ? Buffer.from(data, "utf8") : data).subarray(bytesWritten));
  }

  async #writeAll(rest: Uint8Array): Promise<void> {
    while (rest.byteLength > 0) {
      const { bytesWritten } = await this.#handle.write(rest);
      rest = rest.subarray(bytesWritten);
    }
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return (await this.#handle.read(buffer, offset, length, position)).bytesRead;
  }

  async sizeBytes(): Promise<number> {
    return (await this.#handle.stat()).size;
  }

  sync(): Promise<void> {
    return this.#handle.sync();
  }

  datasync(): Promise<void> {
    return this.#handle.datasync();
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}

/** The real file system. */
export const nodeDisk: Disk = Object.freeze({
  async open(path: string, flags: "r" | "a" | "w", mode = 0o644): Promise<DiskFile> {
    return new NodeDiskFile(await open(path, flags, mode));
  },
  readFile: (path: string) => readFile(path),
  rename: (fromPath: string, toPath: string) => rename(fromPath, toPath),
  remove: (path: string) => rm(path, { force: true }),
  truncate: (path: string, lengthBytes: number) => truncate(path, lengthBytes),
  readdir: (directory: string) => readdir(directory),
  async removeDirectory(directory: string): Promise<void> {
    try {
      await rmdir(directory);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  },
  async mkdir(directory: string): Promise<void> {
    await mkdir(directory, { recursive: true });
  },
  async sizeBytes(path: string): Promise<number> {
    return (await stat(path)).size;
  },
  async syncDirectory(directory: string): Promise<void> {
    const handle = await open(directory, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  withLock: withFileLock,
  holdLock: holdFileLock,
});

/** Whether `error` is node's (or a simulated disk's) "no such file or directory". */
export function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/** The file's bytes, or null when it is missing. */
export async function readOptionalFile(disk: Disk, path: string): Promise<Buffer | null> {
  try {
    return await disk.readFile(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}
