// What `paynet verify` and `paynet bench` read of a quiet network's durable state, from whichever store it
// runs on: every bank's balances, holds and finished payments, and every payment the gateway logged. Read
// through the modules that own each format (the file adapters' readers, the PostgreSQL adapters' queries).
import { readNetworkState } from "../core/bank/store/file/bank-state.js";
import { readGatewayRecords } from "../core/gateway/store/file/gateway-log.js";
import { bankSchemaName } from "../core/bank/store/postgres/index.js";
import { readLedgerState } from "../core/bank/store/postgres/ledger-rows.js";
import { readAllPayments } from "../core/gateway/store/postgres/read-all.js";
import { openDatabase } from "../core/durable/postgres/database.js";
import type { DataPaths } from "../core/durable/paths.js";
import type { Finished, Hold } from "../core/domain/ledger.js";
import type { PaymentRecord } from "../core/domain/payment.js";
import type { StoreChoice } from "./store-option.js";

export interface BankDurableState {
  holds: Map<string, Hold>;
  finished: Map<string, Finished>;
}

export interface DurableNetworkState {
  /** Every account's durable balance, by `user@bank`. */
  balancesMinor: Map<string, bigint>;
  banks: Map<string, BankDurableState>;
}

/** Finished payments read back per bank: every one a verify run or a bench can make, far more than either makes. */
const finishedReadMax = 10_000_000;

export async function readDurableNetwork(
  store: StoreChoice,
  paths: DataPaths,
  banks: readonly string[],
): Promise<DurableNetworkState> {
  if (store.kind === "files") return readNetworkState(paths, banks);
  const database = openDatabase({ url: store.url, applicationName: "paynet-reader" });
  try {
    const balancesMinor = new Map<string, bigint>();
    const states = new Map<string, BankDurableState>();
    for (const bank of banks) {
      const state = await readLedgerState(database, bankSchemaName(bank), finishedReadMax);
      states.set(bank, { holds: state.holds, finished: state.finished });
      for (const [username, account] of state.accounts) balancesMinor.set(`${username}@${bank}`, account.balanceMinor);
    }
    return { balancesMinor, banks: states };
  } finally {
    await database.end();
  }
}

export async function readGatewayPayments(store: StoreChoice, paths: DataPaths): Promise<PaymentRecord[]> {
  if (store.kind === "files") return [...(await readGatewayRecords(paths)).values()];
  const database = openDatabase({ url: store.url, applicationName: "paynet-reader" });
  try {
    return await readAllPayments(database);
  } finally {
    await database.end();
  }
}
