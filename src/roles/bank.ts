// Wires a bank process: its accounts, its server, its registration with the gateway and its overdue holds.
import { dirname } from "node:path";
import { removeStaleTempFiles } from "../core/durable/files.js";
import { holdFileLock, onLockWait } from "../core/durable/file-lock.js";
import { dataPaths, finishedLogPath, type DataPaths } from "../core/durable/paths.js";
import { bankFiles, loadIdentity } from "../core/transport/certificates.js";
import { clientCredentials, expectServerName, serverCredentials } from "../core/transport/tls.js";
import { Participant } from "../core/bank/participant.js";
import { FileLedgerStore } from "../core/bank/store/file/file-ledger-store.js";
import { PostgresLedgerStore } from "../core/bank/store/postgres/index.js";
import type { LedgerStore } from "../core/bank/store/ledger-store.js";
import { checkDurability, holdSessionLock, openDatabase } from "../core/durable/postgres/database.js";
import { describeStore, type StoreChoice } from "./store-option.js";
import type { Logger } from "../core/observability/log.js";
import { bankStateFiles } from "../core/bank/store/file/bank-state.js";
import { bankService } from "../core/bank/bank-service.js";
import { Bank, Decision, PaymentGateway } from "../gen/paynet/v1/paynet_pb.js";
import { addService, createClient } from "../core/transport/rpc.js";
import { describePeer, gatewayServerName } from "../core/transport/identity.js";
import { bind, newServer, shutdown } from "../core/transport/listen.js";
import { takeNextPort } from "../core/durable/port-file.js";
import { loadBankAccounts } from "../core/bank/store/file/accounts-csv.js";
import { hashPassword, isPasswordHash } from "../core/bank/passwords.js";
import { PaymentError } from "../core/domain/errors.js";
import { exitCodes } from "./exit-codes.js";
import { askOnTerminal, chooseBank } from "./bank-choice.js";
import { WaitingNotice, gatewayAddress, onTerminate, roleLogger, startMetrics } from "./process.js";

export interface BankFlags {
  dataDir: string;
  /** A bank name or a 1-based number into the accounts file's banks; undefined: ask on a terminal. */
  id: string | undefined;
  host: string;
  port: number | undefined;
  gateway: string | undefined;
  holdTimeoutMs: number;
  metricsPort: number | undefined;
  /** Where the ledger lives: the data dir's files, or a PostgreSQL database (schema paynet_bank_<bank>). */
  store: StoreChoice;
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
  const { store, release: releaseStore } =
    flags.store.kind === "postgres"
      ? await openPostgresLedger(flags.store, bank, paths, logger, onWriteFailure)
      : await openFileLedger(bank, paths, logger, onWriteFailure);
  const participant = await Participant.open(store, {
    bank,
    holdTimeoutMs: flags.holdTimeoutMs,
    finishedRetainedMax: bankTimeouts.finishedRetainedMax,
    logger,
  });

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
    { address, accounts: participant.accountCount, holds: participant.holds().length },
    `listening on ${address}`,
  );

  const gatewayAt = await gatewayAddress(flags.gateway, paths.clientGatewayTxt);
  const waiting = new WaitingNotice(`the gateway at ${gatewayAt}`, (message, waitedMs) =>
    logger.info({ gateway: gatewayAt, waitedMs }, message),
  );
  const gateway = createClient(
    PaymentGateway,
    gatewayAt,
    clientCredentials(identity),
    expectServerName(gatewayServerName),
  );
  let registered = false;
  const register = async () => {
    try {
      await gateway.registerServer({ bank, address }, { timeoutMs: bankTimeouts.registerTimeoutMs });
      if (!registered) logger.info({}, "registered with the gateway");
      registered = true;
      waiting.done();
    } catch (error) {
      if (registered) logger.warn({ reason: PaymentError.fromGrpc(error).code }, "lost the gateway");
      registered = false;
      waiting.stillWaiting();
    }
  };
  // Overdue holds are never dropped: the bank asks the coordinator, and only its answer releases them.
  const resolveOverdueHolds = async () => {
    for (const hold of participant.expiredHolds()) {
      participant.deferHold(hold.paymentId, bankTimeouts.holdRecheckMs);
      try {
        const { decision } = await gateway.getDecision(
          { paymentId: hold.paymentId },
          { timeoutMs: bankTimeouts.decisionQueryTimeoutMs },
        );
        if (decision === Decision.COMMIT) await participant.commit(hold.paymentId);
        if (decision === Decision.ABORT) await participant.abort(hold.paymentId);
        if (decision !== Decision.PENDING)
          logger.info(
            { paymentId: hold.paymentId, decision: Decision[decision] },
            "overdue hold resolved by the coordinator",
          );
      } catch (error) {
        logger.warn(
          { paymentId: hold.paymentId, reason: PaymentError.fromGrpc(error).code },
          "overdue hold: no decision yet",
        );
      }
    }
  };
  // Holds that survived a restart are settled with the coordinator now rather than at their expiry.
  participant.expireAllHolds();
  // Registration is the heartbeat: every heartbeatMs while the gateway answers, sooner while it does not.
  let heartbeat: NodeJS.Timeout | null = null;
  let stopped = false;
  let retryMs: number = bankTimeouts.reregisterMinMs;
  const beat = async () => {
    await register();
    retryMs = registered ? bankTimeouts.reregisterMinMs : Math.min(retryMs * 2, bankTimeouts.heartbeatMs);
    if (!stopped) heartbeat = setTimeout(() => void beat(), registered ? bankTimeouts.heartbeatMs : retryMs);
  };
  await beat();
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    // It catches each hold's failure itself: nothing rejects here.
    void resolveOverdueHolds().finally(() => (sweeping = false));
  }, bankTimeouts.sweepMs);

  onTerminate(async () => {
    await stopMetrics?.();
    stopped = true;
    if (heartbeat !== null) clearTimeout(heartbeat);
    clearInterval(sweeper);
    gateway.close();
    await shutdown(server, bankTimeouts.shutdownGraceMs);
    await participant.close();
    await releaseStore();
  }, logger);
}

interface OpenedLedger {
  store: LedgerStore;
  /** After the participant closed the store: what the process held for it. */
  release: () => Promise<void>;
}

/** The ledger in the data dir's files (server/), with the lock that makes this the bank's only process here. */
async function openFileLedger(
  bank: string,
  paths: DataPaths,
  logger: Logger,
  onWriteFailure: (error: unknown) => void,
): Promise<OpenedLedger> {
  // One process per bank: its rows, its pending section and its finished log are its alone.
  const releaseBankLock = await holdFileLock(finishedLogPath(paths, bank));
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
  choice: Extract<StoreChoice, { kind: "postgres" }>,
  bank: string,
  paths: DataPaths,
  logger: Logger,
  onWriteFailure: (error: unknown) => void,
): Promise<OpenedLedger> {
  const database = openDatabase({ url: choice.url, applicationName: `paynet-bank-${bank}` });
  try {
    const settings = await checkDurability(database, { allowAsyncCommit: choice.allowAsyncCommit });
    const lock = await holdSessionLock(database, `paynet bank ${bank}`);
    lock.lost.catch((error: unknown) => {
      logger.error({ error: String(error) }, "lost the bank's lock on the database; exiting");
      process.exit(exitCodes.storeLost);
    });
    const store = await PostgresLedgerStore.open({
      database,
      bank,
      finishedRetainedMax: bankTimeouts.finishedRetainedMax,
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
      onWriteFailure,
      logger,
    });
    logger.info(
      { store: describeStore(choice), fsync: settings.fsync, synchronousCommit: settings.synchronousCommit },
      "ledger open in PostgreSQL",
    );
    return {
      store,
      release: async () => {
        await lock.release();
        await database.end();
      },
    };
  } catch (error) {
    await database.end().catch(() => undefined);
    throw error;
  }
}
