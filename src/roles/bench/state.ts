// What `paynet bench` reads of a network's state, through the modules that own each file: the gateway's
// records of this run's payments, and every bank's durable balances (its journal replayed over its last
// checkpoint), once the network has gone quiet.
import { setTimeout as sleep } from "node:timers/promises";
import { readAccountsCsv, type AccountRow } from "../../core/bank/store/file/accounts-csv.js";
import { loggedOutcomes, type LoggedPayment } from "./stats.js";
import { readDurableNetwork, readGatewayPayments } from "../network-state.js";
import type { StoreChoice } from "../store-option.js";
import type { DataPaths } from "../../core/durable/paths.js";

export const settlePollMs = 200;
/** Consecutive quiet polls needed: a request that outlived its client's deadline could still begin a payment. */
const quietPollsNeeded = 2;

export interface DurableBalances {
  rows: AccountRow[];
  balances: Map<string, bigint>;
  holds: number;
}

/** The accounts file's rows and every bank's durable balances (its journal replayed over its last checkpoint). */
export async function readDurableBalances(
  store: StoreChoice,
  paths: DataPaths,
  banks: readonly string[],
): Promise<DurableBalances> {
  const rows = await readAccountsCsv(paths.accountsCsv);
  const state = await readDurableNetwork(store, paths, banks);
  let holds = 0;
  for (const bank of state.banks.values()) holds += bank.holds.size;
  return { rows, balances: state.balancesMinor, holds };
}

export interface Settled {
  settled: boolean;
  logged: Map<string, LoggedPayment>;
  /** The balances of the last quiet poll (null if none was quiet). */
  durable: DurableBalances | null;
  settleMs: number;
  /** Why the last poll could not read the state, if it could not. */
  readError: string | null;
}

/**
 * Polls until every payment of this run (ids starting with `idPrefix`) is finished at the gateway and no
 * bank holds anything, on consecutive polls, or until `timeoutMs`, or until `givingUp` names a reason.
 */
export async function waitUntilSettled(
  store: StoreChoice,
  paths: DataPaths,
  banks: readonly string[],
  idPrefix: string,
  timeoutMs: number,
  givingUp: () => string | null,
): Promise<Settled> {
  const startedMs = Date.now();
  let logged = new Map<string, LoggedPayment>();
  let readError: string | null = null;
  let quietPolls = 0;
  while (Date.now() - startedMs <= timeoutMs) {
    let durable: DurableBalances | null = null;
    try {
      logged = loggedOutcomes(await readGatewayPayments(store, paths), idPrefix);
      durable = await readDurableBalances(store, paths, banks);
      readError = null;
    } catch (error) {
      readError = (error as Error).message;
    }
    const reason = givingUp();
    if (reason !== null)
      return { settled: false, logged, durable: null, settleMs: Date.now() - startedMs, readError: reason };
    const quiet = durable !== null && durable.holds === 0 && [...logged.values()].every((record) => record.finished);
    quietPolls = quiet ? quietPolls + 1 : 0;
    if (quietPolls >= quietPollsNeeded)
      return { settled: true, logged, durable, settleMs: Date.now() - startedMs, readError };
    await sleep(settlePollMs);
  }
  return { settled: false, logged, durable: null, settleMs: Date.now() - startedMs, readError };
}
