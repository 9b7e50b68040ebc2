// Finds a payment's line in the gateway's archive (transaction_archive.jsonl) while holding about two bytes
// of memory per archived payment, however long the archive grows, and without reading the whole archive at
// every start.
//
// The archive is cut into chunks of consecutive lines. A sealed chunk's index is a file of its own,
// transaction_archive.index/<start>-<end>.idx (the chunk's byte range in the archive): a Bloom filter and a
// bucket table, which stay in memory, then the chunk's (hash, offset) entries sorted by hash, which are read
// from the file only when the filter says an id may be in the chunk. The lines after the last sealed chunk
// (the tail) are indexed in memory until there are enough of them to seal.
//
// Index files are derived data: the archive is the truth. A file that is missing, damaged or does not fit
// the archive is rebuilt from the archive at open, together with every file after it.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { assert } from "../../../domain/assert.js";
import { removeStaleTempFiles, writeFileAtomic } from "../../../durable/files.js";
import { isMissing, nodeDisk, type Disk } from "../../../durable/disk.js";

/** Payments per sealed chunk: about 140 KB of memory per chunk (16 bits of filter per payment). */
export const archiveChunkRecordsDefault = 65_536;
/** Sorting packs an entry's position into 21 bits beside its 32-bit hash (exact in a float64). */
const chunkRecordsMax = 1 << 21;
export const archiveChunkRecordsMax = chunkRecordsMax - 1;
const bloomBitsPerRecord = 16;
/** About this many entries per bucket: one read of half a kilobyte per lookup that passes the filter. */
const bucketRecordsTarget = 32;
/** The longest archive line read back; a record is a few hundred bytes. */
const archiveLineBytesMax = 1024 * 1024;

/** Chunks merged into one of the next level (as an LSM tree does), so that an id is tested against few filters. */
const mergeFanIn = 8;
/**
 * No merge beyond this level: a level-2 chunk holds 64 sealed chunks (4 million payments at the default)
 * and its merge reads their entries into memory (16 bytes each).
 */
const mergedLevelMax = 2;
/** A merge yields to the event loop after this many entries: the gateway keeps answering meanwhile. */
const mergeSliceEntries = 65_536;

const magic = "PNARCIX2";
const headerBytes = 52;
const entryBytes = 16;
const checksumBytes = 32;
const chunkNamePattern = /^([0-9]{16})-([0-9]{16})\.idx$/;

export class ArchiveIndexError extends Error {
  override readonly name = "ArchiveIndexError";
}

/** 32-bit MurmurHash3 of the id's UTF-16 code units. The hashes are stored, so they must never change. */
function murmur3(id: string, seed: number): number {
  let hash = seed;
  for (let index = 0; index < id.length; index += 1) {
    let unit = Math.imul(id.charCodeAt(index), 0xcc9e2d51);
    unit = (unit << 15) | (unit >>> 17);
    hash ^= Math.imul(unit, 0x1b873593);
    hash = (hash << 13) | (hash >>> 19);
    hash = (Math.imul(hash, 5) + 0xe6546b64) | 0;
  }
  hash ^= id.length;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** A 64-bit hash of a payment id, as two unsigned 32-bit halves. */
export interface IdHash {
  high: number;
  low: number;
}

export function hashId(id: string): IdHash {
  return { high: murmur3(id, 0x2f0b3c1d), low: murmur3(id, 0x7a5e9d43) };
}

/** Bit `probe` of the filter for this hash (double hashing: low + probe × high). */
function bloomBit(hash: IdHash, probe: number, mask: number): number {
  return ((hash.low + Math.imul(probe, hash.high | 1)) >>> 0) & mask;
}

function bucketOf(high: number, bucketBits: number): number {
  return bucketBits === 0 ? 0 : high >>> (32 - bucketBits);
}

/** A sealed chunk as held in memory: enough to rule an id out, and where to read its entries. */
interface SealedChunk {
  path: string;
  startBytes: number;
  endBytes: number;
  records: number;
  committed: number;
  aborted: number;
  bloom: Uint32Array;
  bloomHashes: number;
  bucketBits: number;
  /** Entry index where each bucket starts, and one past the last. */
  buckets: Uint32Array;
  entriesAtBytes: number;
  /** 0 for a chunk sealed from the tail; a merge of mergeFanIn chunks of level L has level L + 1. */
  level: number;
}

function mayHold(chunk: SealedChunk, hash: IdHash): boolean {
  const mask = chunk.bloom.length * 32 - 1;
  for (let probe = 0; probe < chunk.bloomHashes; probe += 1) {
    const bit = bloomBit(hash, probe, mask);
    if ((chunk.bloom[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
  }
  return true;
}

function chunkName(startBytes: number, endBytes: number): string {
  return `${String(startBytes).padStart(16, "0")}-${String(endBytes).padStart(16, "0")}.idx`;
}

/** An archived payment as a chunk is built from it. */
interface TailEntry {
  offsetBytes: number;
  committed: boolean;
}

/** A chunk's entries, sorted by the high half of the hash. */
interface SortedEntries {
  high: Uint32Array;
  low: Uint32Array;
  offsetBytes: Float64Array;
  committed: number;
}

/** The tail's oldest entries as a chunk's sorted entries. */
function sortTailEntries(entries: ReadonlyArray<readonly [string, TailEntry]>): SortedEntries {
  const records = entries.length;
  assert(records > 0 && records < chunkRecordsMax, `a sealed chunk holds 1 to ${chunkRecordsMax - 1} payments, not ${records}`);
  const hashes = entries.map(([id]) => hashId(id));
  const sortKeys = new Float64Array(records);
  for (let index = 0; index < records; index += 1) sortKeys[index] = hashes[index]!.high * chunkRecordsMax + index;
  sortKeys.sort();
  const sorted: SortedEntries = { high: new Uint32Array(records), low: new Uint32Array(records), offsetBytes: new Float64Array(records), committed: 0 };
  for (let rank = 0; rank < records; rank += 1) {
    const index = sortKeys[rank]! % chunkRecordsMax;
    sorted.high[rank] = hashes[index]!.high;
    sorted.low[rank] = hashes[index]!.low;
    const entry = entries[index]![1];
    sorted.offsetBytes[rank] = entry.offsetBytes;
    if (entry.committed) sorted.committed += 1;
  }
  return sorted;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The file of one chunk: header, Bloom filter, bucket table, a SHA-256 of those (the head, read at open),
 * the entries sorted by hash, and a SHA-256 of the whole file before it (checked when a merge reads the
 * entries). Numbers are little-endian; offsets are float64 (safe integers).
 */
async function encodeChunk(startBytes: number, endBytes: number, level: number, entries: SortedEntries): Promise<Buffer> {
  const records = entries.high.length;
  let bloomBits = 64;
  while (bloomBits < records * bloomBitsPerRecord) bloomBits *= 2;
  const bloomHashes = Math.min(16, Math.max(1, Math.round((Math.LN2 * bloomBits) / records)));
  let bucketBits = 0;
  while (bucketBits < 20 && records / 2 ** bucketBits > bucketRecordsTarget) bucketBits += 1;
  const bloom = new Uint32Array(bloomBits / 32);
  const buckets = new Uint32Array(2 ** bucketBits + 1);
  const headBytes = headerBytes + bloom.length * 4 + buckets.length * 4;
  const entriesAtBytes = headBytes + checksumBytes;
  const file = Buffer.alloc(entriesAtBytes + records * entryBytes + checksumBytes);
  const hash: IdHash = { high: 0, low: 0 };
  for (let rank = 0; rank < records; rank += 1) {
    if (rank > 0 && rank % mergeSliceEntries === 0) await yieldToEventLoop();
    hash.high = entries.high[rank]!;
    hash.low = entries.low[rank]!;
    for (let probe = 0; probe < bloomHashes; probe += 1) {
      const bit = bloomBit(hash, probe, bloomBits - 1);
      bloom[bit >>> 5]! |= 1 << (bit & 31);
    }
    buckets[bucketOf(hash.high, bucketBits) + 1]! += 1;
    const at = entriesAtBytes + rank * entryBytes;
    file.writeUInt32LE(hash.high, at);
    file.writeUInt32LE(hash.low, at + 4);
    file.writeDoubleLE(entries.offsetBytes[rank]!, at + 8);
  }
  for (let bucket = 1; bucket < buckets.length; bucket += 1) buckets[bucket]! += buckets[bucket - 1]!;
  file.write(magic, 0, "latin1");
  file.writeDoubleLE(startBytes, 8);
  file.writeDoubleLE(endBytes, 16);
  file.writeUInt32LE(records, 24);
  file.writeUInt32LE(entries.committed, 28);
  file.writeUInt32LE(records - entries.committed, 32);
  file.writeUInt32LE(bloomBits, 36);
  file.writeUInt32LE(bloomHashes, 40);
  file.writeUInt32LE(bucketBits, 44);
  file.writeUInt32LE(level, 48);
  bloom.forEach((word, index) => file.writeUInt32LE(word, headerBytes + index * 4));
  buckets.forEach((first, index) => file.writeUInt32LE(first, headerBytes + bloom.length * 4 + index * 4));
  createHash("sha256").update(file.subarray(0, headBytes)).digest().copy(file, headBytes);
  createHash("sha256").update(file.subarray(0, file.length - checksumBytes)).digest().copy(file, file.length - checksumBytes);
  return file;
}

/** The sizes a chunk's header announces, or null if it is not a chunk header. */
function headerShape(header: Buffer): { records: number; committed: number; aborted: number; bloomBits: number; bloomHashes: number; bucketBits: number; level: number; headBytes: number; fileBytes: number } | null {
  if (header.length < headerBytes || header.toString("latin1", 0, 8) !== magic) return null;
  const records = header.readUInt32LE(24);
  const committed = header.readUInt32LE(28);
  const aborted = header.readUInt32LE(32);
  const bloomBits = header.readUInt32LE(36);
  const bloomHashes = header.readUInt32LE(40);
  const bucketBits = header.readUInt32LE(44);
  const level = header.readUInt32LE(48);
  const ok = records > 0 && committed + aborted === records && bloomBits >= 64 && bloomBits <= 2 ** 31 && (bloomBits & (bloomBits - 1)) === 0 && bloomHashes >= 1 && bloomHashes <= 16 && bucketBits <= 20 && level <= mergedLevelMax;
  if (!ok) return null;
  const headBytes = headerBytes + bloomBits / 8 + (2 ** bucketBits + 1) * 4;
  return { records, committed, aborted, bloomBits, bloomHashes, bucketBits, level, headBytes, fileBytes: headBytes + checksumBytes + records * entryBytes + checksumBytes };
}

/** A chunk from its head (header, filter, buckets and their checksum); null if damaged or not the named range. */
function decodeChunkHead(path: string, head: Buffer, fileBytes: number, startBytes: number, endBytes: number): SealedChunk | null {
  const shape = headerShape(head);
  if (shape === null || shape.fileBytes !== fileBytes || head.length < shape.headBytes + checksumBytes) return null;
  if (head.readDoubleLE(8) !== startBytes || head.readDoubleLE(16) !== endBytes) return null;
  if (!createHash("sha256").update(head.subarray(0, shape.headBytes)).digest().equals(head.subarray(shape.headBytes, shape.headBytes + checksumBytes))) return null;
  const bloom = new Uint32Array(shape.bloomBits / 32);
  const buckets = new Uint32Array(2 ** shape.bucketBits + 1);
  for (let index = 0; index < bloom.length; index += 1) bloom[index] = head.readUInt32LE(headerBytes + index * 4);
  for (let index = 0; index < buckets.length; index += 1) buckets[index] = head.readUInt32LE(headerBytes + bloom.length * 4 + index * 4);
  if (buckets[buckets.length - 1] !== shape.records) return null;
  return {
    path,
    startBytes,
    endBytes,
    records: shape.records,
    committed: shape.committed,
    aborted: shape.aborted,
    bloom,
    bloomHashes: shape.bloomHashes,
    bucketBits: shape.bucketBits,
    buckets,
    entriesAtBytes: shape.headBytes + checksumBytes,
    level: shape.level,
  };
}

/** Reads a chunk file's head; null if it is damaged, cut short, or not the named range. */
async function readChunkHead(disk: Disk, path: string, startBytes: number, endBytes: number): Promise<SealedChunk | null> {
  const handle = await disk.open(path, "r");
  try {
    const fileBytes = await handle.sizeBytes();
    const header = Buffer.alloc(headerBytes);
    if ((await handle.read(header, 0, headerBytes, 0)) !== headerBytes) return null;
    const shape = headerShape(header);
    if (shape === null || shape.fileBytes !== fileBytes) return null;
    const head = Buffer.alloc(shape.headBytes + checksumBytes);
    if ((await handle.read(head, 0, head.length, 0)) !== head.length) return null;
    return decodeChunkHead(path, head, fileBytes, startBytes, endBytes);
  } finally {
    await handle.close();
  }
}

/** A chunk's entries, read whole and checked against the file's checksum (a merge's input). */
async function readChunkEntries(disk: Disk, chunk: SealedChunk): Promise<SortedEntries> {
  const file = await disk.readFile(chunk.path);
  const body = file.subarray(0, file.length - checksumBytes);
  if (!createHash("sha256").update(body).digest().equals(file.subarray(file.length - checksumBytes))) {
    throw new ArchiveIndexError(`${chunk.path}: its entries do not match its checksum; remove the file to rebuild it from the archive`);
  }
  const entries: SortedEntries = { high: new Uint32Array(chunk.records), low: new Uint32Array(chunk.records), offsetBytes: new Float64Array(chunk.records), committed: chunk.committed };
  for (let index = 0; index < chunk.records; index += 1) {
    const at = chunk.entriesAtBytes + index * entryBytes;
    entries.high[index] = file.readUInt32LE(at);
    entries.low[index] = file.readUInt32LE(at + 4);
    entries.offsetBytes[index] = file.readDoubleLE(at + 8);
  }
  return entries;
}

/** Merges runs sorted by `high` into one sorted run. */
async function mergeSorted(runs: readonly SortedEntries[]): Promise<SortedEntries> {
  const records = runs.reduce((sum, run) => sum + run.high.length, 0);
  const merged: SortedEntries = { high: new Uint32Array(records), low: new Uint32Array(records), offsetBytes: new Float64Array(records), committed: runs.reduce((sum, run) => sum + run.committed, 0) };
  const heads = runs.map(() => 0);
  for (let out = 0; out < records; out += 1) {
    if (out > 0 && out % mergeSliceEntries === 0) await yieldToEventLoop();
    let best = -1;
    for (let run = 0; run < runs.length; run += 1) {
      if (heads[run]! < runs[run]!.high.length && (best === -1 || runs[run]!.high[heads[run]!]! < runs[best]!.high[heads[best]!]!)) best = run;
    }
    const from = runs[best]!;
    const at = heads[best]!;
    merged.high[out] = from.high[at]!;
    merged.low[out] = from.low[at]!;
    merged.offsetBytes[out] = from.offsetBytes[at]!;
    heads[best] = at + 1;
  }
  return merged;
}

/** Reads the line that starts at `offsetBytes` (without its newline). */
export async function readLineAt(disk: Disk, path: string, offsetBytes: number): Promise<string> {
  const handle = await disk.open(path, "r");
  try {
    const chunks: Buffer[] = [];
    let position = offsetBytes;
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024);
      const bytesRead = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) throw new ArchiveIndexError(`${path}: no line ends after byte ${offsetBytes}`);
      const end = buffer.subarray(0, bytesRead).indexOf(0x0a);
      if (end !== -1) {
        chunks.push(buffer.subarray(0, end));
        return Buffer.concat(chunks).toString("utf8");
      }
      chunks.push(buffer.subarray(0, bytesRead));
      position += bytesRead;
      if (position - offsetBytes > archiveLineBytesMax) throw new ArchiveIndexError(`${path}: the line at byte ${offsetBytes} is longer than ${archiveLineBytesMax} bytes`);
    }
  } finally {
    await handle.close();
  }
}

/** The id a line of the archive holds (a whole line: damage is reported by the caller's decoding). */
function idOfLine(line: string): unknown {
  try {
    return (JSON.parse(line) as { paymentId?: unknown }).paymentId;
  } catch {
    return undefined;
  }
}

/** What the archive holds, line by line, as ArchiveIndex.open reads the part no chunk covers. */
export type ArchiveScan = (fromBytes: number, onRecord: (paymentId: string, committed: boolean, offsetBytes: number, endBytes: number) => Promise<void> | undefined) => Promise<{ completeBytes: number; tornBytes: number }>;

export interface ArchiveIndexOpenOptions {
  archivePath: string;
  directory: string;
  /** Reads the archive's complete lines from a byte offset on (GatewayLog owns the line format). */
  scan: ArchiveScan;
  /** Ids held in memory (the snapshot and journal): their archived lines are left over from a crash, and skipped. */
  isLive: (paymentId: string) => boolean;
  chunkRecords?: number;
  /** Told when a merge fails: the unmerged chunks keep answering, and no further merge is tried. */
  onMergeError?: (error: Error) => void;
  disk?: Disk;
}

export class ArchiveIndex {
  readonly #archivePath: string;
  readonly #directory: string;
  readonly #disk: Disk;
  readonly #chunkRecords: number;
  readonly #chunks: SealedChunk[] = [];
  /** Archived payments after the last sealed chunk, in archive order. */
  #tail = new Map<string, TailEntry>();
  #tailStartBytes = 0;
  #tailCommitted = 0;
  #merging: Promise<void> | null = null;
  /** Lines read at open (those no sealed chunk covered), for the operator's log. */
  linesScannedAtOpen = 0;
  /** Index files rebuilt at open (missing, damaged, or not fitting the archive). */
  filesDiscardedAtOpen = 0;
  /** The end of the archive's last complete line, as this index knows it. */
  #endBytes = 0;
  /** A torn final line found at open, in bytes (the caller cuts it off). */
  tornBytes = 0;

  readonly #onMergeError: (error: Error) => void;

  private constructor(disk: Disk, archivePath: string, directory: string, chunkRecords: number, onMergeError: (error: Error) => void) {
    this.#disk = disk;
    this.#archivePath = archivePath;
    this.#directory = directory;
    this.#chunkRecords = chunkRecords;
    this.#onMergeError = onMergeError;
  }

  /**
   * Loads the sealed chunks that fit the archive, one after another from byte 0, then reads the archive
   * after the last of them, sealing chunks as it goes. A torn final line is reported, not indexed.
   */
  static async open(options: ArchiveIndexOpenOptions): Promise<ArchiveIndex> {
    const chunkRecords = options.chunkRecords ?? archiveChunkRecordsDefault;
    assert(Number.isSafeInteger(chunkRecords) && chunkRecords >= 1 && chunkRecords <= archiveChunkRecordsMax, `chunkRecords must be 1 to ${archiveChunkRecordsMax}`);
    const disk = options.disk ?? nodeDisk;
    const index = new ArchiveIndex(disk, options.archivePath, options.directory, chunkRecords, options.onMergeError ?? (() => undefined));
    const archiveBytes = await disk.sizeBytes(options.archivePath).catch((error: unknown) => {
      if (isMissing(error)) return 0;
      throw error;
    });
    await removeStaleTempFiles(options.directory, disk);
    // By start, and the widest first: a merge's output before the inputs its crash left behind.
    const files = (await disk.readdir(options.directory).catch(() => [] as string[]))
      .flatMap((name) => {
        const match = chunkNamePattern.exec(name);
        return match === null ? [] : [{ name, startBytes: Number(match[1]), endBytes: Number(match[2]) }];
      })
      .sort((a, b) => a.startBytes - b.startBytes || b.endBytes - a.endBytes);
    let coveredBytes = 0;
    for (const { name, startBytes, endBytes } of files) {
      const path = join(options.directory, name);
      if (index.filesDiscardedAtOpen === 0 && endBytes <= coveredBytes) {
        // An input of a merge whose output is already loaded.
        await disk.remove(path);
        continue;
      }
      const chunk = startBytes === coveredBytes && endBytes <= archiveBytes ? await readChunkHead(disk, path, startBytes, endBytes) : null;
      if (chunk === null || index.filesDiscardedAtOpen > 0) {
        // Everything after a file that does not fit is rebuilt: the chunks must tile the archive from byte 0.
        index.filesDiscardedAtOpen += 1;
        await disk.remove(path);
        continue;
      }
      index.#chunks.push(chunk);
      coveredBytes = chunk.endBytes;
    }
    index.#tailStartBytes = coveredBytes;
    index.#endBytes = coveredBytes;
    const indexLine = async (paymentId: string, committed: boolean, offsetBytes: number, endBytes: number, checkChunks: boolean): Promise<void> => {
      if (checkChunks && (await index.#findInChunks(paymentId)) !== undefined) return;
      if (index.#tail.size >= chunkRecords) await index.#sealOne(offsetBytes);
      index.add(paymentId, offsetBytes, endBytes, committed);
    };
    const { completeBytes, tornBytes } = await options.scan(coveredBytes, (paymentId, committed, offsetBytes, endBytes) => {
      index.linesScannedAtOpen += 1;
      // A payment archived twice (a crash before the snapshot dropped it) is counted and found once.
      if (options.isLive(paymentId) || index.#tail.has(paymentId)) return undefined;
      const checkChunks = index.#mayBeSealed(paymentId);
      if (!checkChunks && index.#tail.size < chunkRecords) {
        // The common case, without a promise per line: a million lines are read when the index is rebuilt.
        index.add(paymentId, offsetBytes, endBytes, committed);
        return undefined;
      }
      return indexLine(paymentId, committed, offsetBytes, endBytes, checkChunks);
    });
    index.#endBytes = completeBytes;
    index.tornBytes = tornBytes;
    index.#scheduleMerge();
    return index;
  }

  /** Waits for a merge under way (an orderly stop leaves no half-done work behind). */
  async close(): Promise<void> {
    while (this.#merging !== null) await this.#merging;
  }

  /** The first failure of a merge in the background, if any (the unmerged chunks still answer). */
  mergeError: Error | null = null;

  #scheduleMerge(): void {
    if (this.#merging !== null || this.mergeError !== null) return;
    this.#merging = this.#mergeWhileFull()
      .catch((error: unknown) => {
        this.mergeError = error as Error;
        this.#onMergeError(this.mergeError);
      })
      .finally(() => {
        this.#merging = null;
      });
  }

  /** Merges every run of mergeFanIn adjacent chunks of one level below mergedLevelMax, oldest first. */
  async #mergeWhileFull(): Promise<void> {
    for (;;) {
      const first = this.#chunks.findIndex((chunk, index) => chunk.level < mergedLevelMax && index + mergeFanIn <= this.#chunks.length && this.#chunks.slice(index, index + mergeFanIn).every((other) => other.level === chunk.level));
      if (first === -1) return;
      await this.#merge(this.#chunks.slice(first, first + mergeFanIn));
    }
  }

  /** Writes the merged chunk, swaps it in for its inputs, then removes their files. */
  async #merge(inputs: SealedChunk[]): Promise<void> {
    const runs: SortedEntries[] = [];
    for (const chunk of inputs) runs.push(await readChunkEntries(this.#disk, chunk));
    const merged = await mergeSorted(runs);
    const startBytes = inputs[0]!.startBytes;
    const endBytes = inputs.at(-1)!.endBytes;
    const path = join(this.#directory, chunkName(startBytes, endBytes));
    const file = await encodeChunk(startBytes, endBytes, inputs[0]!.level + 1, merged);
    await writeFileAtomic(path, file, { crashName: "gateway-archive-index-temp-written", disk: this.#disk });
    const chunk = decodeChunkHead(path, file, file.length, startBytes, endBytes);
    assert(chunk !== null, "a chunk just encoded decodes");
    const at = this.#chunks.indexOf(inputs[0]!);
    assert(at !== -1 && inputs.every((input, offset) => this.#chunks[at + offset] === input), "a merge's inputs are still adjacent");
    this.#chunks.splice(at, inputs.length, chunk);
    for (const input of inputs) await this.#disk.remove(input.path);
  }

  get sealedChunks(): number {
    return this.#chunks.length;
  }

  /** Each sealed chunk's level, oldest first. */
  chunkLevels(): number[] {
    return this.#chunks.map((chunk) => chunk.level);
  }

  get tailRecords(): number {
    return this.#tail.size;
  }

  counts(): { committed: number; aborted: number } {
    let committed = this.#tailCommitted;
    let aborted = this.#tail.size - this.#tailCommitted;
    for (const chunk of this.#chunks) {
      committed += chunk.committed;
      aborted += chunk.aborted;
    }
    return { committed, aborted };
  }

  /** The bytes of memory the sealed chunks hold (filters and bucket tables). */
  get sealedMemoryBytes(): number {
    return this.#chunks.reduce((sum, chunk) => sum + chunk.bloom.byteLength + chunk.buckets.byteLength, 0);
  }

  /** The end of the archive's last complete line: where the next line goes. */
  get endBytes(): number {
    return this.#endBytes;
  }

  /** Records a line just appended (and fsynced) to the archive, from offsetBytes to endBytes. */
  add(paymentId: string, offsetBytes: number, endBytes: number, committed: boolean): void {
    assert(!this.#tail.has(paymentId), `${paymentId} archived twice`);
    assert(offsetBytes >= this.#endBytes && endBytes > offsetBytes, `archive line at ${offsetBytes}..${endBytes} overlaps the archive before ${this.#endBytes}`);
    this.#tail.set(paymentId, { offsetBytes, committed });
    this.#endBytes = endBytes;
    if (committed) this.#tailCommitted += 1;
  }

  /** False when the id is surely not archived; true when it is, or (rarely) may be: see lineOf. */
  mayContain(paymentId: string): boolean {
    return this.#tail.has(paymentId) || this.#mayBeSealed(paymentId);
  }

  #mayBeSealed(paymentId: string): boolean {
    if (this.#chunks.length === 0) return false;
    const hash = hashId(paymentId);
    return this.#chunks.some((chunk) => mayHold(chunk, hash));
  }

  /** The archive line of the payment, or undefined if it was never archived. */
  async lineOf(paymentId: string): Promise<string | undefined> {
    const tailEntry = this.#tail.get(paymentId);
    if (tailEntry !== undefined) return readLineAt(this.#disk, this.#archivePath, tailEntry.offsetBytes);
    return (await this.#findInChunks(paymentId))?.line;
  }

  /**
   * Seals the oldest `chunkRecords` tail entries into an index file while the tail holds that many. Call it
   * only when every tail entry is out of the snapshot and the journal for good (before a compaction's
   * archive append): a sealed chunk never loses an entry, even to a crash.
   */
  async sealFull(): Promise<void> {
    while (this.#tail.size >= this.#chunkRecords) await this.#sealOne();
  }

  /**
   * Seals the oldest chunkRecords entries of the tail as the chunk that ends at `endBytes`: by default where
   * the next tail entry starts, or where the archive ends.
   */
  async #sealOne(endBytesGiven?: number): Promise<void> {
    const entries: Array<[string, TailEntry]> = [];
    let next: TailEntry | undefined;
    for (const entry of this.#tail) {
      if (entries.length === this.#chunkRecords) {
        next = entry[1];
        break;
      }
      entries.push(entry);
    }
    const endBytes = endBytesGiven ?? next?.offsetBytes ?? this.#endBytes;
    const startBytes = this.#tailStartBytes;
    const path = join(this.#directory, chunkName(startBytes, endBytes));
    const file = await encodeChunk(startBytes, endBytes, 0, sortTailEntries(entries));
    await writeFileAtomic(path, file, { crashName: "gateway-archive-index-temp-written", disk: this.#disk });
    const chunk = decodeChunkHead(path, file, file.length, startBytes, endBytes);
    assert(chunk !== null, "a chunk just encoded decodes");
    this.#chunks.push(chunk);
    for (const [paymentId, entry] of entries) {
      this.#tail.delete(paymentId);
      if (entry.committed) this.#tailCommitted -= 1;
    }
    this.#tailStartBytes = endBytes;
    this.#scheduleMerge();
  }

  /** Searches the sealed chunks, newest first; a hash match counts only if the line holds the same id. */
  async #findInChunks(paymentId: string): Promise<{ line: string } | undefined> {
    const hash = hashId(paymentId);
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.#findInChunksOnce(paymentId, hash);
      } catch (error) {
        // A merge finished meanwhile and removed an input's file: the merged chunk has its entries.
        if ((error as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 3) throw error;
      }
    }
  }

  async #findInChunksOnce(paymentId: string, hash: IdHash): Promise<{ line: string } | undefined> {
    // A merge may swap chunks while this reads: it searches the list as it was, whose files stay until swapped.
    const chunks = this.#chunks.slice();
    for (let index = chunks.length - 1; index >= 0; index -= 1) {
      const chunk = chunks[index]!;
      if (!mayHold(chunk, hash)) continue;
      for (const offsetBytes of await entryOffsets(this.#disk, chunk, hash)) {
        const line = await readLineAt(this.#disk, this.#archivePath, offsetBytes);
        if (idOfLine(line) === paymentId) return { line };
      }
    }
    return undefined;
  }

}

/** Archive offsets of the chunk's entries with this hash (one bucket read from its file). */
async function entryOffsets(disk: Disk, chunk: SealedChunk, hash: IdHash): Promise<number[]> {
  const bucket = bucketOf(hash.high, chunk.bucketBits);
  const first = chunk.buckets[bucket]!;
  const count = chunk.buckets[bucket + 1]! - first;
  if (count === 0) return [];
  const bytes = Buffer.alloc(count * entryBytes);
  const handle = await disk.open(chunk.path, "r");
  try {
    const bytesRead = await handle.read(bytes, 0, bytes.length, chunk.entriesAtBytes + first * entryBytes);
    if (bytesRead !== bytes.length) throw new ArchiveIndexError(`${chunk.path}: shorter than its bucket table says; remove it to rebuild it`);
  } finally {
    await handle.close();
  }
  const offsets: number[] = [];
  for (let at = 0; at < bytes.length; at += entryBytes) {
    if (bytes.readUInt32LE(at) === hash.high && bytes.readUInt32LE(at + 4) === hash.low) offsets.push(bytes.readDoubleLE(at + 8));
  }
  return offsets;
}
