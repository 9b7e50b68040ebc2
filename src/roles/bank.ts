// Wires a bank process: its accounts, its server, its registration with every gateway and its overdue holds.
import { dirname } from "node:path";
import { removeStaleTempFiles } from "../core/durable/files.js";
import { holdFileLock, LockHeldError, onLockWait } from "../core/durable/file-lock.js";
import { dataPaths, finishedLogPath, type DataPaths } from "../core/durable/paths.js";
import { bankFiles, loadIdentity } from "../core/transport/certificates.js";
import { clientCredentials, serverCredentials } from "../core/transport/tls.js";
import { Participant } from "../core/bank/participant.js";
import { FileLedgerStore } from "../core/bank/store/file/file-ledger-store.js";
import { PostgresLedgerStore, SharedLedger } from "../core/bank/store/postgres/index.js";
import type { LedgerStore } from "../core/bank/store/ledger-store.js";
import type { BankLedger } from "../core/bank/bank-ledger.js";
import { checkDurability, holdSessionLock, openDatabase } from "../core/durable/postgres/database.js";
import { describeStore, waitForStore, type StoreChoice } from "./store-option.js";
import type { Logger } from "../core/observability/log.js";
import { bankStateFiles } from "../core/bank/store/file/bank-state.js";
import { bankService } from "../core/bank/bank-service.js";
import { Bank } from "../gen/paynet/v1/paynet_pb.js";
import { addService } from "../core/transport/rpc.js";
import { describePeer } from "../core/transport/identity.js";
import { bind, newServer, shutdown } from "../core/transport/listen.js";
import { takeNextPort } from "../core/durable/port-file.js";
import { loadBankAccounts } from "../core/bank/store/file/accounts-csv.js";
import { hashPassword, isPasswordHash } from "../core/bank/passwords.js";
import { PaymentError } from "../core/domain/errors.js";
import { gatewayAddresses, onTerminate, roleLogger, startMetrics } from "./process.js";
import { GatewayLinks } from "./bank-gateway-links.js";
import { exitCodes } from "./exit-codes.js";
import { askOnTerminal, chooseBank } from "./bank-choice.js";

export interface BankFlags {
  dataDir: string;
  /** A bank name or a 1-based number into the accounts file's banks; undefined: ask on a terminal. */
  id: string | undefined;
  host: string;
  port: number | undefined;
  /** `A,B,…`: every gateway to register with (validated by the CLI); default client/current_port_server.txt. */
  gateway: string | undefined;
  holdTimeoutMs: number;
  metricsPort: number | undefined;
  /** Where the ledger lives: the data dir's files, or a PostgreSQL database (schema paynet_bank_<bank>). */
  store: StoreChoice;
  /** PostgreSQL only: other processes of this bank may serve from the same schema (SharedLedger). */
  multiInstance?: boolean;
}

export const bankTimeouts = Object.freeze({
  holdTimeoutMsDefault: 30_000,
  /**
   * Finished payments remembered to answer a repeated Commit, Abort or Transaction the same way. A repeat
   * comes from a gateway retrying while this bank answers (each attempt within the gateway's
   * retryDelayMaxMs + decisionCallTimeoutMs, 7 s, of the last) or re-driving after its restart, while other
   * payments keep finishing here: at the 11,000–13,700 payments/s measured batched (docs/benchmarks.md,
   * "Current figures") this covers about 20 s, three times that window. Each costs about 150 bytes of memory
   * (about 40 MB in all) and one line of the finished log.
   */
  finishedRetainedMax: 250_000,
  heartbeatMs: 2_000,
  /**
   * While the gateway does not answer, the bank asks again after this long, doubling up to heartbeatMs: a
   * restarted gateway hears from every bank within a few hundred milliseconds of listening, not a heartbeat later.
   */
  reregisterMinMs: 100,
  registerTimeoutMs: 2_000,
  decisionQueryTimeoutMs: 2_000,
  holdRecheckMs: 5_000,
  sweepMs: 1_000,
  /** Overdue holds asked about per sweep; the rest wait for the next (a sweep never overlaps the previous). */
  sweepHoldsMax: 500,
  portAttemptsMax: 20,
  shutdownGraceMs: 2_000,
});

async function listen(
  flags: BankFlags,
  bindServer: (address: string) => Promise<number>,
  portFile: string,
): Promise<number> {
  if (flags.port !== undefined) return bindServer(`${flags.host}:${flags.port}`);
  for (let attempt = 1; ; attempt += 1) {
    const port = await takeNextPort(portFile);
    try {
      return await bindServer(`${flags.host}:${port}`);
    } catch (error) {
      if (attempt >= bankTimeouts.portAttemptsMax) throw error;
    }
  }
}

export async function runBank(flags: BankFlags): Promise<void> {
  const paths = dataPaths(flags.dataDir);
  const { bank, note } = await chooseBank(flags.id, paths.accountsCsv, askOnTerminal());
  const logger = roleLogger(`bank ${bank}`);
  if (note !== null) logger.info({ bank }, note);
  onLockWait((message, fields) => logger.warn(fields, message));
  const identity = await loadIdentity(paths.certificateDir, bankFiles(paths.certificateDir, bank));
  const onWriteFailure = (error: unknown) => {
    // Memory is now ahead of the store: stop, and let a restart recover from what is durable.
    logger.error({ error: String(error) }, "a durable write failed; exiting");
    process.exit(exitCodes.storeLost);
  };
  const opened =
    flags.store.kind === "postgres"
      ? await openPostgresLedger(flags, flags.store, bank, paths, logger, onWriteFailure)
      : await openFileLedger(bank, paths, logger, onWriteFailure);
  const releaseStore = opened.release;
  const participant: BankLedger =
    opened.shared ??
    (await Participant.open(opened.store, {
      bank,
      holdTimeoutMs: flags.holdTimeoutMs,
      finishedRetainedMax: bankTimeouts.finishedRetainedMax,
      logger,
    }));

  const server = newServer();
  addService(server, Bank, bankService(participant), {
    onError: (error, context) => {
      if (error.code === "PERMISSION_DENIED")
        logger.warn(
          { method: context.method, peer: describePeer(context.peer), peerAddress: context.peerAddress },
          `refused: ${error.message}`,
        );
    },
  });
  const credentials = serverCredentials(identity);
  const port = await listen(flags, (address) => bind(server, address, credentials), paths.bankPortTxt);
  const address = `${flags.host === "0.0.0.0" ? "127.0.0.1" : flags.host}:${port}`;
  const stopMetrics = await startMetrics(flags.metricsPort, logger);
  logger.info(
    { address, accounts: participant.accountCount, holds: (await participant.listHolds()).length },
    `listening on ${address}`,
  );

  const gateways = new GatewayLinks(await gatewayAddresses(flags.gateway, paths.clientGatewayTxt), {
    bank,
    address,
    credentials: clientCredentials(identity),
    timeouts: bankTimeouts,
    logger,
  });
  // Overdue holds are never dropped: the bank asks the coordinators, and only an answer releases them.
  const resolveOverdueHolds = async () => {
    for (const hold of await participant.claimOverdueHolds(bankTimeouts.holdRecheckMs, bankTimeouts.sweepHoldsMax)) {
      try {
        const decision = await gateways.decision(hold.paymentId);
        if (decision === "commit") await participant.commit(hold.paymentId);
        if (decision === "abort") await participant.abort(hold.paymentId);
        if (decision !== "pending")
          logger.info({ paymentId: hold.paymentId, decision }, "overdue hold resolved by the coordinator");
      } catch (error) {
        logger.warn(
          { paymentId: hold.paymentId, reason: PaymentError.fromGrpc(error).code },
          "overdue hold: no decision yet",
        );
      }
    }
  };
  let sweeper: NodeJS.Timeout | undefined = undefined;
  let terminating = false;
  // Installed before the first registration, which can wait registerTimeoutMs for a gateway that does not answer:
  // a SIGTERM meanwhile stops the bank in order too.
  onTerminate(async () => {
    terminating = true;
    await stopMetrics?.();
    gateways.stop();
    clearInterval(sweeper);
    await shutdown(server, bankTimeouts.shutdownGraceMs);
    await participant.close();
    await releaseStore();
  }, logger);

  // Holds that survived a restart are settled with the coordinator now rather than at their expiry.
  participant.expireAllHolds();
  await gateways.start();
  if (terminating) return;
  let sweeping = false;
  sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    // It catches each hold's failure itself: nothing rejects here.
    void resolveOverdueHolds().finally(() => (sweeping = false));
  }, bankTimeouts.sweepMs);
}

type OpenedLedger = (
  | { store: LedgerStore; shared?: undefined }
  /** Several processes of the bank on one schema: nothing to load, every operation goes to the database. */
  | { store?: undefined; shared: BankLedger }
) & {
  /** After the participant closed the store: what the process held for it. */
  release: () => Promise<void>;
};

/** The ledger in the data dir's files (server/), with the lock that makes this the bank's only process here. */
async function openFileLedger(
  bank: string,
  paths: DataPaths,
  logger: Logger,
  onWriteFailure: (error: unknown) => void,
): Promise<OpenedLedger> {
  // One process per bank: its rows, its pending section and its finished log are its alone.
  const releaseBankLock = await holdFileLock(finishedLogPath(paths, bank)).catch((error: unknown) => {
    if (!(error instanceof LockHeldError)) throw error;
    const pid = error.pid === null ? "" : ` (pid ${error.pid})`;
    throw new Error(`bank ${bank} is already running here${pid}, on data dir ${paths.root}`, { cause: error });
  });
  for (const name of await removeStaleTempFiles(dirname(paths.accountsCsv)))
    logger.warn({ file: name }, "removed a temp file left by a process that died mid-write");
  const store = await FileLedgerStore.open({
    bank,
    files: bankStateFiles(paths, bank),
    finishedRetainedMax: bankTimeouts.finishedRetainedMax,
    logger,
    onWriteFailure,
  });
  return { store, release: releaseBankLock };
}

/**
 * The ledger in PostgreSQL (schema paynet_bank_<bank>): the server's durability checked, one process per bank
 * (an advisory lock), and, on an empty schema, the bank's accounts imported once from server/dummydata.csv.
 */
async function openPostgresLedger(
  flags: Pick<BankFlags, "multiInstance" | "holdTimeoutMs">,
  choice: Extract<StoreChoice, { kind: "postgres" }>,
  bank: string,
  paths: DataPaths,
  logger: Logger,
  onWriteFailure: (error: unknown) => void,
): Promise<OpenedLedger> {
  const database = openDatabase({ url: choice.url, applicationName: `paynet-bank-${bank}` });
  try {
    await waitForStore(database, choice, logger);
    const settings = await checkDurability(database, { allowAsyncCommit: choice.allowAsyncCommit });
    // Taken shared by --multi-instance processes: they run side by side, and none runs beside a lone one.
    const lock = await holdSessionLock(database, `paynet bank ${bank}`, { shared: flags.multiInstance === true });
    lock.lost.catch((error: unknown) => {
      logger.error({ error: String(error) }, "lost the bank's lock on the database; exiting");
      process.exit(exitCodes.storeLost);
    });
    const schemaOptions = {
      database,
      bank,
      // Only for an empty schema. The seed's plaintext passwords are replaced by hashes in the CSV too, as the
      // file store does: no password stays on disk in plaintext.
      initialAccounts: async () => {
        const accounts = await loadBankAccounts(paths.accountsCsv, bank, hashPassword, isPasswordHash);
        logger.info(
          { accounts: accounts.size, from: paths.accountsCsv },
          "importing the bank's accounts into PostgreSQL",
        );
        return accounts;
      },
      logger,
    };
    const release = async () => {
      await lock.release();
      await database.end();
    };
    const described = {
      store: describeStore(choice),
      fsync: settings.fsync,
      synchronousCommit: settings.synchronousCommit,
      multiInstance: flags.multiInstance === true,
    };
    if (flags.multiInstance === true) {
      const schema = await PostgresLedgerStore.prepareSchema(schemaOptions);
      const shared = await SharedLedger.open({
        database,
        bank,
        schema,
        finishedRetainedMax: bankTimeouts.finishedRetainedMax,
        holdTimeoutMs: flags.holdTimeoutMs,
        logger,
      });
      logger.info(described, "ledger open in PostgreSQL, shared with the bank's other instances");
      return { shared, release };
    }
    const store = await PostgresLedgerStore.open({
      ...schemaOptions,
      finishedRetainedMax: bankTimeouts.finishedRetainedMax,
      onWriteFailure,
    });
    logger.info(described, "ledger open in PostgreSQL");
    return { store, release };
  } catch (error) {
    await database.end().catch(() => undefined);
    throw error;
  }
}
