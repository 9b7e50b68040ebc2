// A file system that loses power, under the file adapters themselves (a Disk, durable/disk.ts), so that a
// missing fsync inside an adapter is caught, not only one at the store ports (simulated-disk.ts).
//
// The model, as POSIX promises and no more:
//   - a file's bytes are durable up to its last fsync/fdatasync; what was written after is lost at a power
//     loss, except that the OS may have written back any prefix of what was appended since (so an
//     unsynced line may survive whole, or torn: a reader must cope with both);
//   - a directory's names (a file created, renamed over another, removed) are durable only once the
//     directory itself was fsynced; until then a power loss brings back the names as they were;
//   - a truncation is durable with the file's next fsync.
// Directories themselves are durable once made (the stores' directories exist before any payment), and
// locks are a process's own (a simulated disk has one process at a time). Operations complete on later
// turns (fsyncs a macrotask later, so that writes can queue behind one), in an order fixed by the caller's:
// a seeded test does the same thing every time.
//
// crash() ends this instance (every operation on it, and every one in progress, hangs forever, as the dead
// process's would) and returns the disk a restart finds. Test-only.
import { basename, dirname, isAbsolute, normalize } from "node:path";
import type { Disk, DiskFile } from "../durable/disk.js";
import { assert } from "../domain/assert.js";
import { hangForever } from "./simulated-disk.js";

interface Content {
  /** Bytes [0, length) are the file's; a buffer is never changed below its length once shared. */
  bytes: Buffer;
  length: number;
}

class Inode {
  content: Content;
  durable: Content;
  /** Whether the file only grew since its last fsync (then the OS may have written back a prefix of the growth). */
  appendedOnly = true;

  constructor(content: Content, durable: Content = content) {
    this.content = content;
    this.durable = durable;
  }

  append(data: Uint8Array): void {
    let { bytes } = this.content;
    const { length } = this.content;
    if (length + data.byteLength > bytes.length) {
      // A new buffer: the old one stays as it is for whoever shares it (the durable content).
      const grown = Buffer.alloc(Math.max(64, 2 * (length + data.byteLength)));
      bytes.copy(grown, 0, 0, length);
      bytes = grown;
    }
    bytes.set(data, length);
    this.content = { bytes, length: length + data.byteLength };
  }

  truncate(lengthBytes: number): void {
    const bytes = Buffer.alloc(Math.max(64, lengthBytes));
    this.content.bytes.copy(bytes, 0, 0, Math.min(lengthBytes, this.content.length));
    this.content = { bytes, length: lengthBytes };
    this.appendedOnly = false;
  }

  sync(): void {
    this.durable = this.content;
    this.appendedOnly = true;
  }
}

interface Directory {
  names: Map<string, Inode>;
  durableNames: Map<string, Inode>;
}

export type DiskOperation =
  | "open"
  | "read"
  | "write"
  | "sync"
  | "rename"
  | "remove"
  | "truncate"
  | "readdir"
  | "mkdir"
  | "stat"
  | "sync-directory"
  | "close";

export interface SimulatedFileSystemOptions {
  /** Told of every operation before it takes effect, synchronously; it may crash() the disk from inside. */
  onOperation?: (operation: DiskOperation, path: string) => void;
  /**
   * A deliberately broken disk, for proving that the tests catch it: fsyncs of files (and directories) whose
   * path this matches do nothing (a dropped fsync-before-reply). Never outside those tests.
   */
  unsafeSkipSyncOf?: RegExp;
}

export interface PowerLossOptions {
  /**
   * For each file that only grew since its last fsync, how many of the unsynced bytes the OS had written back
   * (0: none; at most all of them). Default none.
   */
  writtenBack?: (path: string, unsyncedBytes: number) => number;
}

function missing(operation: string, path: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`ENOENT: no such file or directory, ${operation} '${path}'`);
  error.code = "ENOENT";
  error.path = path;
  return error;
}

function bytesOf(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? Buffer.from(data, "utf8") : data;
}

export class SimulatedFileSystem implements Disk {
  readonly #directories: Map<string, Directory>;
  readonly #onOperation: (operation: DiskOperation, path: string) => void;
  readonly #unsafeSkipSyncOf: RegExp | null;
  #dead = false;
  /** Resolves when the power goes. */
  readonly died: Promise<void>;
  #die!: () => void;

  constructor(options: SimulatedFileSystemOptions = {}, directories: Map<string, Directory> = new Map()) {
    this.#directories = directories;
    this.#onOperation = options.onOperation ?? (() => undefined);
    this.#unsafeSkipSyncOf = options.unsafeSkipSyncOf ?? null;
    this.died = new Promise((resolve) => (this.#die = resolve));
  }

  get dead(): boolean {
    return this.#dead;
  }

  /**
   * The power goes: this instance hangs from now on, and the returned disk holds what was durable (plus what
   * `options.writtenBack` says the OS had written back). `options` of the new disk are given anew.
   */
  crash(powerLoss: PowerLossOptions = {}, options: SimulatedFileSystemOptions = {}): SimulatedFileSystem {
    this.#dead = true;
    this.#die();
    const survivors = new Map<Inode, Inode>();
    const survivorOf = (inode: Inode, path: string): Inode => {
      let survivor = survivors.get(inode);
      if (survivor !== undefined) return survivor;
      const { durable, content } = inode;
      let length = durable.length;
      if (inode.appendedOnly && content.length > durable.length) {
        const kept = powerLoss.writtenBack?.(path, content.length - durable.length) ?? 0;
        assert(
          Number.isSafeInteger(kept) && kept >= 0 && kept <= content.length - durable.length,
          "written back: at most the unsynced bytes",
        );
        length += kept;
      }
      const bytes = Buffer.alloc(Math.max(64, length));
      (length > durable.length ? content.bytes : durable.bytes).copy(bytes, 0, 0, length);
      survivor = new Inode({ bytes, length });
      survivors.set(inode, survivor);
      return survivor;
    };
    const directories = new Map<string, Directory>();
    for (const [path, directory] of this.#directories) {
      const names = new Map(
        [...directory.durableNames].map(([name, inode]) => [name, survivorOf(inode, `${path}/${name}`)]),
      );
      directories.set(path, { names, durableNames: new Map(names) });
    }
    return new SimulatedFileSystem(options, directories);
  }

  /** A file's current bytes (for a test's setup and checks), or null when it is missing. */
  peek(path: string): Buffer | null {
    const inode = this.#lookup(path);
    return inode === undefined ? null : Buffer.from(inode.content.bytes.subarray(0, inode.content.length));
  }

  /** Creates (or replaces) a file with durable `data`, its directories made: a test's starting state. */
  place(path: string, data: string | Uint8Array): void {
    this.#mkdirs(dirname(this.#checked(path)));
    const bytes = Buffer.from(bytesOf(data));
    const inode = new Inode({ bytes, length: bytes.length });
    const directory = this.#directory(dirname(path))!;
    directory.names.set(basename(path), inode);
    directory.durableNames.set(basename(path), inode);
  }

  async open(path: string, flags: "r" | "a" | "w"): Promise<DiskFile> {
    await this.#begin("open", path);
    let inode = this.#lookup(path);
    if (inode === undefined) {
      if (flags === "r") throw missing("open", path);
      const directory = this.#directory(dirname(path));
      if (directory === undefined) throw missing("open", path);
      inode = new Inode({ bytes: Buffer.alloc(64), length: 0 });
      inode.durable = { bytes: inode.content.bytes, length: 0 };
      directory.names.set(basename(path), inode);
    } else if (flags === "w") {
      inode.truncate(0);
    }
    return new SimulatedFile(this, path, inode);
  }

  async readFile(path: string): Promise<Buffer> {
    await this.#begin("read", path);
    const inode = this.#lookup(path);
    if (inode === undefined) throw missing("open", path);
    return Buffer.from(inode.content.bytes.subarray(0, inode.content.length));
  }

  async rename(fromPath: string, toPath: string): Promise<void> {
    await this.#begin("rename", fromPath);
    const inode = this.#lookup(fromPath);
    const target = this.#directory(dirname(this.#checked(toPath)));
    if (inode === undefined || target === undefined) throw missing("rename", fromPath);
    this.#directory(dirname(fromPath))!.names.delete(basename(fromPath));
    target.names.set(basename(toPath), inode);
  }

  async remove(path: string): Promise<void> {
    await this.#begin("remove", path);
    this.#directory(dirname(this.#checked(path)))?.names.delete(basename(path));
  }

  async truncate(path: string, lengthBytes: number): Promise<void> {
    await this.#begin("truncate", path);
    const inode = this.#lookup(path);
    if (inode === undefined) throw missing("open", path);
    inode.truncate(lengthBytes);
  }

  async readdir(directoryPath: string): Promise<string[]> {
    await this.#begin("readdir", directoryPath);
    const directory = this.#directory(this.#checked(directoryPath));
    if (directory === undefined) throw missing("scandir", directoryPath);
    return [...directory.names.keys()].sort();
  }

  async removeDirectory(directoryPath: string): Promise<void> {
    await this.#begin("remove", directoryPath);
    const directory = this.#directory(this.#checked(directoryPath));
    if (directory === undefined) return;
    if (directory.names.size > 0)
      throw Object.assign(new Error(`ENOTEMPTY: directory not empty, rmdir '${directoryPath}'`), { code: "ENOTEMPTY" });
    this.#directories.delete(directoryPath);
  }

  async mkdir(directoryPath: string): Promise<void> {
    await this.#begin("mkdir", directoryPath);
    this.#mkdirs(this.#checked(directoryPath));
  }

  async sizeBytes(path: string): Promise<number> {
    await this.#begin("stat", path);
    const inode = this.#lookup(path);
    if (inode === undefined) throw missing("stat", path);
    return inode.content.length;
  }

  async syncDirectory(directoryPath: string): Promise<void> {
    await this.#begin("sync-directory", directoryPath);
    const directory = this.#directory(this.#checked(directoryPath));
    if (directory === undefined) throw missing("open", directoryPath);
    await this.#fsyncLatency();
    if (this.#unsafeSkipSyncOf?.test(directoryPath) === true) return;
    directory.durableNames = new Map(directory.names);
  }

  async withLock<T>(path: string, critical: () => Promise<T>): Promise<T> {
    this.#checked(path);
    return critical();
  }

  async holdLock(path: string): Promise<() => Promise<void>> {
    this.#checked(path);
    return async () => undefined;
  }

  /** For SimulatedFile: the start of an operation on an open file. */
  async begin(operation: DiskOperation, path: string): Promise<void> {
    await this.#begin(operation, path);
  }

  /** For SimulatedFile: an fsync of `inode` (skipped on a deliberately broken disk). */
  async syncFile(path: string, inode: Inode): Promise<void> {
    await this.#begin("sync", path);
    await this.#fsyncLatency();
    if (this.#unsafeSkipSyncOf?.test(path) === true) return;
    inode.sync();
  }

  /** Tells the observer, which may crash the disk: then the operation never completes. */
  async #begin(operation: DiskOperation, path: string): Promise<void> {
    if (!this.#dead) this.#onOperation(operation, path);
    if (this.#dead) return hangForever();
  }

  /** An fsync completes a macrotask later: writes made meanwhile queue behind it. */
  async #fsyncLatency(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#dead) return hangForever();
  }

  #checked(path: string): string {
    assert(isAbsolute(path) && normalize(path) === path, `a simulated disk takes absolute, normalized paths: ${path}`);
    return path;
  }

  #directory(path: string): Directory | undefined {
    return this.#directories.get(path);
  }

  #lookup(path: string): Inode | undefined {
    return this.#directory(dirname(this.#checked(path)))?.names.get(basename(path));
  }

  #mkdirs(path: string): void {
    for (let current = path; !this.#directories.has(current); current = dirname(current)) {
      this.#directories.set(current, { names: new Map(), durableNames: new Map() });
      if (dirname(current) === current) break;
    }
  }
}

class SimulatedFile implements DiskFile {
  readonly #disk: SimulatedFileSystem;
  readonly #path: string;
  readonly #inode: Inode;
  #closed = false;

  constructor(disk: SimulatedFileSystem, path: string, inode: Inode) {
    this.#disk = disk;
    this.#path = path;
    this.#inode = inode;
  }

  async write(data: string | Uint8Array): Promise<void> {
    await this.#disk.begin("write", this.#path);
    assert(!this.#closed, `write to a closed file ${this.#path}`);
    this.#inode.append(bytesOf(data));
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    await this.#disk.begin("read", this.#path);
    const { bytes, length: fileBytes } = this.#inode.content;
    const count = Math.max(0, Math.min(length, fileBytes - position));
    buffer.set(bytes.subarray(position, position + count), offset);
    return count;
  }

  async sizeBytes(): Promise<number> {
    await this.#disk.begin("stat", this.#path);
    return this.#inode.content.length;
  }

  sync(): Promise<void> {
    return this.#disk.syncFile(this.#path, this.#inode);
  }

  datasync(): Promise<void> {
    return this.#disk.syncFile(this.#path, this.#inode);
  }

  async close(): Promise<void> {
    await this.#disk.begin("close", this.#path);
    this.#closed = true;
  }
}
