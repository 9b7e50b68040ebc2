// The upgrade from an earlier build's archive: payment_gateway/transaction_archive.jsonl (every archived
// record, one line each, appended and fsynced) and its derived index directory transaction_archive.index/.
// At start, before anything else touches the archive, their records are inserted into the archive database
// in batches (each one transaction; an id already there is skipped), then the index directory and the jsonl
// are removed and the directory's entries made durable. A crash anywhere in between leaves the jsonl in
// place, and the next start imports it again: the inserts are idempotent, so the counts stay exact.
import { dirname, join } from "node:path";
import { isMissing, type Disk } from "../../../durable/disk.js";
import type { JsonLinesRead } from "../../../durable/jsonl.js";
import type { ArchivedPayment, PaymentArchive } from "./payment-archive.js";

/** The files of an earlier build's archive. */
export interface LegacyArchivePaths {
  transactionArchiveJsonl: string;
  transactionArchiveIndex: string;
}

/**
 * Reads transaction_archive.jsonl through the gateway log's record format (which the log owns), giving each
 * record as the archive keeps it; refuses damage, naming the file and the line.
 */
export type ReadLegacyArchive = (onRecord: (payment: ArchivedPayment) => void) => Promise<JsonLinesRead>;

/** Records per import transaction: bounded memory however long the old archive is, few commits (fsyncs). */
export const legacyImportBatchRecords = 10_000;

export interface LegacyArchiveImport {
  /** Complete lines read from transaction_archive.jsonl. */
  linesRead: number;
  /** Of those, ids the database did not hold yet (an earlier, interrupted import may have inserted the rest). */
  inserted: number;
  /** A torn final line (an append a crash cut short, whose records the snapshot still held), in bytes. */
  tornBytes: number;
  /** Files removed from transaction_archive.index/. */
  indexFilesRemoved: number;
}

async function sizeOrNull(disk: Disk, path: string): Promise<number | null> {
  try {
    return await disk.sizeBytes(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

async function namesOrNull(disk: Disk, directory: string): Promise<string[] | null> {
  try {
    return await disk.readdir(directory);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** Imports and removes an earlier build's archive; null when there is none (nothing read, nothing changed). */
export async function importLegacyArchive(
  disk: Disk,
  paths: LegacyArchivePaths,
  archive: PaymentArchive,
  readLegacyArchive: ReadLegacyArchive,
): Promise<LegacyArchiveImport | null> {
  const jsonlBytes = await sizeOrNull(disk, paths.transactionArchiveJsonl);
  const indexNames = await namesOrNull(disk, paths.transactionArchiveIndex);
  if (jsonlBytes === null && indexNames === null) return null;
  const stats: LegacyArchiveImport = { linesRead: 0, inserted: 0, tornBytes: 0, indexFilesRemoved: 0 };
  if (jsonlBytes !== null) {
    let batch: ArchivedPayment[] = [];
    const read = await readLegacyArchive((payment) => {
      batch.push(payment);
      if (batch.length < legacyImportBatchRecords) return;
      stats.inserted += archive.insertMany(batch);
      batch = [];
    });
    stats.inserted += archive.insertMany(batch);
    stats.linesRead = read.lines;
    stats.tornBytes = read.tornBytes;
  }
  // Every record is durable in the database now. The index goes first: the jsonl's presence is what says
  // "not imported yet" to the next start.
  for (const name of indexNames ?? []) {
    await disk.remove(join(paths.transactionArchiveIndex, name));
    stats.indexFilesRemoved += 1;
  }
  if (indexNames !== null) await disk.removeDirectory(paths.transactionArchiveIndex);
  await disk.remove(paths.transactionArchiveJsonl);
  await disk.syncDirectory(dirname(paths.transactionArchiveJsonl));
  return stats;
}
