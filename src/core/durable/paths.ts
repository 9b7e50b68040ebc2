// The on-disk layout of the original seed, rooted at --data-dir.
import { join, resolve } from "node:path";

export interface DataPaths {
  readonly root: string;
  readonly certificateDir: string;
  readonly transactionsTxt: string;
  readonly transactionLogsJson: string;
  readonly transactionLogsJournal: string;
  /** The archive of older finished payments (gateway/store/file/sqlite-archive.ts). */
  readonly transactionArchiveSqlite: string;
  /** An earlier build's archive and its index directory: imported into the database at start, then removed. */
  readonly transactionArchiveJsonl: string;
  readonly transactionArchiveIndex: string;
  readonly banksJson: string;
  readonly accountsCsv: string;
  readonly pendingJson: string;
  readonly bankPortTxt: string;
  readonly clientGatewayTxt: string;
  readonly offlinePaymentsJson: string;
  readonly paymentHistoryJson: string;
}

/** A bank's own log of finished payments, beside the shared pending file. */
export function finishedLogPath(paths: DataPaths, bank: string): string {
  return join(paths.root, "server", `finished_transactions_${bank}.jsonl`);
}

export function dataPaths(dataDir: string): DataPaths {
  const root = resolve(dataDir);
  return Object.freeze({
    root,
    certificateDir: join(root, "certificate"),
    transactionsTxt: join(root, "payment_gateway", "transactions.txt"),
    transactionLogsJson: join(root, "payment_gateway", "transaction_logs.json"),
    transactionLogsJournal: join(root, "payment_gateway", "transaction_logs.journal"),
    transactionArchiveSqlite: join(root, "payment_gateway", "transaction_archive.sqlite"),
    transactionArchiveJsonl: join(root, "payment_gateway", "transaction_archive.jsonl"),
    transactionArchiveIndex: join(root, "payment_gateway", "transaction_archive.index"),
    banksJson: join(root, "payment_gateway", "banks.json"),
    accountsCsv: join(root, "server", "dummydata.csv"),
    pendingJson: join(root, "server", "pending_transactions.json"),
    bankPortTxt: join(root, "server", "current_port_server.txt"),
    clientGatewayTxt: join(root, "client", "current_port_server.txt"),
    offlinePaymentsJson: join(root, "client", "offline_payments.json"),
    paymentHistoryJson: join(root, "client", "payment_history.json"),
  });
}
