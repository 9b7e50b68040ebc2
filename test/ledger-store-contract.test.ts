// The LedgerStore contract (helpers/ledger-store-contract.ts) over the memory and file adapters; the PostgreSQL
// adapter runs it in postgres-ledger-store.test.ts, on its own throwaway database.
import { after, before, describe } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryLedgerStore, type LedgerImage } from "../src/core/bank/store/memory/memory-ledger-store.js";
import { FileLedgerStore } from "../src/core/bank/store/file/file-ledger-store.js";
import { serializeAccountsCsv } from "../src/core/bank/store/file/accounts-csv.js";
import type { BankFiles } from "../src/core/bank/store/file/bank-state.js";
import { ledgerStoreContract } from "./helpers/ledger-store-contract.js";

describe("LedgerStore contract: MemoryLedgerStore", () => {
  ledgerStoreContract({
    create(accounts) {
      let current: MemoryLedgerStore | null = null;
      let image: LedgerImage = { accounts, items: [], torn: null };
      return Promise.resolve({
        open(finishedRetainedMax) {
          if (current !== null) image = current.image();
          current = MemoryLedgerStore.fromImage(image, { finishedRetainedMax });
          return Promise.resolve(current);
        },
      });
    },
  });
});

describe("LedgerStore contract: FileLedgerStore", () => {
  let root = "";
  let banks = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "paynet-ledger-contract-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  ledgerStoreContract({
    async create(accounts) {
      banks += 1;
      const files: BankFiles = {
        accountsCsvPath: join(root, `bank${banks}.csv`),
        pendingJsonPath: join(root, `bank${banks}-pending.json`),
        finishedLogPath: join(root, `bank${banks}-finished.jsonl`),
        journalDirectory: root,
      };
      const bank = `B${banks}`;
      await writeFile(
        files.accountsCsvPath,
        serializeAccountsCsv(
          [...accounts].map(([username, account]) => ({
            username,
            balanceMinor: account.balanceMinor,
            password: account.password,
            bank,
          })),
        ),
      );
      return { open: (finishedRetainedMax) => FileLedgerStore.open({ bank, files, finishedRetainedMax }) };
    },
  });
});
