// Wires the gateway process: certificates, log, registry, coordinator, server, signals.
import { onLockWait } from "../core/durable/file-lock.js";
import { dataPaths, type DataPaths } from "../core/durable/paths.js";
import { gatewayFiles, loadIdentity } from "../core/transport/certificates.js";
import { ensureSessionKey, sessionKeyPath } from "../core/transport/session-key.js";
import { clientCredentials, serverCredentials } from "../core/transport/tls.js";
import { GatewayLog } from "../core/gateway/store/file/gateway-log.js";
import {
  GatewayLease,
  LeaseLostError,
  newGatewayId,
  OwnershipLostError,
  PostgresCoordinatorStore,
} from "../core/gateway/store/postgres/index.js";
import type { CoordinatorStore } from "../core/gateway/store/coordinator-store.js";
import { checkDurability, openDatabase } from "../core/durable/postgres/database.js";
import { describeStore, waitForStore, type StoreChoice } from "./store-option.js";
import type { Logger } from "../core/observability/log.js";
import { BankRegistry } from "../core/gateway/bank-registry.js";
import { Coordinator } from "../core/gateway/coordinator.js";
import { SessionStore } from "../core/gateway/sessions.js";
import { LoginThrottle } from "../core/gateway/login-throttle.js";
import { gatewayService } from "../core/gateway/gateway-service.js";
import { PaymentGateway } from "../gen/paynet/v1/paynet_pb.js";
import { addService } from "../core/transport/rpc.js";
import { describePeer } from "../core/transport/identity.js";
import { bind, newServer, shutdown } from "../core/transport/listen.js";
import { dirname } from "node:path";
import { removeStaleTempFiles } from "../core/durable/files.js";
import { LockHeldError } from "../core/durable/file-lock.js";
import { addGatewayLine, removeGatewayLine } from "../core/durable/gateway-list-file.js";
import { exitCodes } from "./exit-codes.js";
import { onTerminate, roleLogger, startMetrics } from "./process.js";

export interface GatewayFlags {
  dataDir: string;
  host: string;
  port: number;
  /** See CoordinatorOptions.unsafeLogDecisionLate; set only by PAYNET_UNSAFE_LATE_DECISION_LOG=1. */
  unsafeLogDecisionLate: boolean;
  metricsPort: number | undefined;
  /** Finished payments kept in memory and in the snapshot; older ones are archived. */
  recordsRetained: number;
  /** --archive-chunk-records was given: a flag of earlier builds' archive index, now without effect (warned about). */
  archiveChunkRecordsIgnored: boolean;
  /** Where the payment log lives: the data dir's files, or a PostgreSQL database. */
  store: StoreChoice;
  /** With PostgreSQL: this gateway's lease on its payments (see gateway-lease.ts). */
  lease: LeaseFlags;
}

export interface LeaseFlags {
  leaseMs: number;
  renewEveryMs: number;
  /** Default: a new one per start (newGatewayId). */
  gatewayId: string | undefined;
}

export const leaseDefaults = Object.freeze({
  /** Long enough to ride out a garbage-collection pause or a slow commit; the bound of a takeover. */
  leaseMs: 5_000,
  renewEveryMs: 1_000,
  /** Payments claimed per look; the rest at the next (every renewEveryMs), so a takeover comes in bounded batches. */
  claimBatchMax: 500,
  /** Rows of gateways gone this long (and owning nothing unfinished) are removed, every forgetEveryTicks renewals. */
  forgetExpiredAfterMs: 24 * 60 * 60_000,
  forgetEveryTicks: 600,
});

export const gatewayTimeouts = Object.freeze({
  prepareTimeoutMs: 5_000,
  decisionCallTimeoutMs: 5_000,
  replyWaitMs: 2_000,
  retryDelayMinMs: 50,
  retryDelayMaxMs: 2_000,
  bankCallTimeoutMs: 5_000,
  sessionTtlMs: 30 * 60_000,
  banksMax: 256,
  shutdownGraceMs: 2_000,
});

export const loginThrottling = Object.freeze({
  userFailuresFree: 5,
  peerFailuresFree: 50,
  lockBaseMs: 5_000,
  lockMaxMs: 15 * 60_000,
  forgetAfterMs: 15 * 60_000,
  entriesMax: 100_000,
});

export async function runGateway(flags: GatewayFlags): Promise<void> {
  const paths = dataPaths(flags.dataDir);
  const logger = roleLogger("gateway");
  onLockWait((message, fields) => logger.warn(fields, message));
  const identity = await loadIdentity(paths.certificateDir, gatewayFiles(paths.certificateDir));
  const sessionKey = await ensureSessionKey(paths.certificateDir);
  if (sessionKey.created)
    logger.info(
      { file: sessionKeyPath(paths.certificateDir) },
      "created the session key; gateways of this network on other machines need a copy of it",
    );
  const {
    store,
    close: closeStore,
    description: storeDescription,
    takeOver,
    setAddress,
  } = flags.store.kind === "postgres"
    ? await openPostgresLog(flags.store, flags.lease, logger)
    : await openFileLog(paths, flags, logger);
  const registry = await BankRegistry.open(paths.banksJson, clientCredentials(identity), {
    banksMax: gatewayTimeouts.banksMax,
  });
  const coordinator = new Coordinator(
    store,
    registry,
    { ...gatewayTimeouts, unsafeLogDecisionLate: flags.unsafeLogDecisionLate },
    logger,
  );
  if (flags.unsafeLogDecisionLate)
    logger.warn(
      {},
      "PAYNET_UNSAFE_LATE_DECISION_LOG is set: commit decisions are logged after phase 2 (a deliberately broken build)",
    );
  const sessions = new SessionStore({ key: sessionKey.key, ttlMs: gatewayTimeouts.sessionTtlMs });

  // On the files, this gateway is the only one: every unfinished payment is its own, recovered now. On
  // PostgreSQL, other gateways may be driving theirs: only those of expired leases are taken, by the lease's loop.
  const recovering = takeOver === null ? await coordinator.recover() : 0;
  const stopTakeOver = takeOver?.(coordinator);

  const server = newServer();
  addService(
    server,
    PaymentGateway,
    gatewayService({
      coordinator,
      coordinatorStore: store,
      storeDescription,
      registry,
      sessions,
      throttle: new LoginThrottle(loginThrottling),
      bankCallTimeoutMs: gatewayTimeouts.bankCallTimeoutMs,
      logger,
    }),
    {
      onError: (error, context) => {
        if (error.code === "PERMISSION_DENIED")
          logger.warn(
            { method: context.method, peer: describePeer(context.peer), peerAddress: context.peerAddress },
            `refused: ${error.message}`,
          );
      },
    },
  );
  const port = await bind(server, `${flags.host}:${flags.port}`, serverCredentials(identity));
  const address = `${flags.host === "0.0.0.0" ? "127.0.0.1" : flags.host}:${port}`;
  // Clients and banks on this machine find the gateways here when no --gateway is given: on the files this is
  // the data dir's only gateway (any other line is an earlier start's); on PostgreSQL others may be listed.
  await addGatewayLine(paths.clientGatewayTxt, address, { alone: flags.store.kind === "files" });
  const stopMetrics = await startMetrics(flags.metricsPort, logger);
  await setAddress(address);
  logger.info({ address, recovering }, `listening on ${address}`);

  onTerminate(async () => {
    await stopMetrics?.();
    stopTakeOver?.();
    coordinator.stop();
    await shutdown(server, gatewayTimeouts.shutdownGraceMs);
    registry.close();
    await closeStore();
    // A client that read the line before this removal is refused here at once and moves on to the next gateway.
    await removeGatewayLine(paths.clientGatewayTxt, address);
  }, logger);
}

interface OpenedLog {
  store: CoordinatorStore;
  close: () => Promise<void>;
  /** For `paynet status`. */
  description: string;
  /** With several gateways on one database: starts the loop that takes over expired gateways' payments. */
  takeOver: ((coordinator: Coordinator) => () => void) | null;
  /** Tells the other gateways where this one listens. */
  setAddress: (address: string) => Promise<void>;
}

/** The payment log in the data dir's files (payment_gateway/), with its archive; what the opening found is logged. */
async function openFileLog(paths: DataPaths, flags: GatewayFlags, logger: Logger): Promise<OpenedLog> {
  const log = await GatewayLog.open(paths, {
    finishedRetainedMax: flags.recordsRetained,
    onWriteFailure: (error) => {
      // Memory is now ahead of disk: stop, and let a restart recover from what is durable.
      logger.error({ error: String(error) }, "a durable write of the payment log failed; exiting");
      process.exit(exitCodes.storeLost);
    },
  }).catch((error: unknown) => {
    if (!(error instanceof LockHeldError)) throw error;
    const pid = error.pid === null ? "" : ` (pid ${error.pid})`;
    throw new Error(`a gateway is already running here${pid}, on data dir ${paths.root}`, { cause: error });
  });
  if (log.tornBytesDropped > 0)
    logger.warn(
      { bytes: log.tornBytesDropped, file: paths.transactionLogsJournal },
      "dropped a torn final journal line (an append cut short by a crash; nothing was answered on it)",
    );
  await removeStaleTempFiles(dirname(paths.transactionLogsJson));
  if (flags.archiveChunkRecordsIgnored)
    logger.warn(
      {},
      "--archive-chunk-records is ignored: the archive is a SQLite database now (transaction_archive.sqlite); drop the flag",
    );
  const imported = log.legacyArchiveImport;
  if (imported !== null) {
    logger.info(
      { ...imported, from: paths.transactionArchiveJsonl, into: paths.transactionArchiveSqlite },
      `imported the earlier archive: ${imported.linesRead} records read, ${imported.inserted} new to the database; removed transaction_archive.jsonl and ${imported.indexFilesRemoved} index files`,
    );
    if (imported.tornBytes > 0)
      logger.warn(
        { bytes: imported.tornBytes, file: paths.transactionArchiveJsonl },
        "the earlier archive ended in a torn line (an append cut short by a crash; the snapshot still held its records): not imported",
      );
  }
  if (log.archivedDroppedAtOpen > 0)
    logger.info(
      { records: log.archivedDroppedAtOpen },
      "finished payments both archived and in the snapshot (a crash between the two writes) are now answered from the archive alone",
    );
  logger.info({ ...log.archivedCounts(), file: paths.transactionArchiveSqlite }, "archive open");
  return {
    store: log,
    close: () => log.close(),
    description: "files",
    takeOver: null,
    setAddress: () => Promise.resolve(),
  };
}

/**
 * The payment log in PostgreSQL (schema paynet_gateway), shared with any other gateway on the database: the
 * server's durability checked first, then this gateway's lease taken (gateway-lease.ts). The lease's loop
 * renews it and claims the unfinished payments of gateways whose lease expired; a lease lost stops this one.
 */
async function openPostgresLog(
  choice: Extract<StoreChoice, { kind: "postgres" }>,
  leaseFlags: LeaseFlags,
  logger: Logger,
): Promise<OpenedLog> {
  const gatewayId = leaseFlags.gatewayId ?? newGatewayId();
  const database = openDatabase({ url: choice.url, applicationName: `paynet-gateway ${gatewayId}` });
  try {
    await waitForStore(database, choice, logger);
    const settings = await checkDurability(database, { allowAsyncCommit: choice.allowAsyncCommit });
    const store = await PostgresCoordinatorStore.open({
      database,
      owner: gatewayId,
      onWriteFailure: (error) => {
        // The coordinator may be ahead of the database, or hold payments another gateway now drives: stop,
        // and let a restart (a new gateway) recover from what committed.
        const why = error instanceof OwnershipLostError ? "this gateway lost its lease" : "a write failed";
        logger.error({ error: String(error) }, `${why}: the payment log in PostgreSQL refuses it; exiting`);
        process.exit(exitCodes.storeLost);
      },
      logger,
    });
    const lease = await GatewayLease.acquire({
      database,
      schema: store.schema,
      gatewayId,
      leaseMs: leaseFlags.leaseMs,
    });
    logger.info(
      {
        store: describeStore(choice),
        fsync: settings.fsync,
        synchronousCommit: settings.synchronousCommit,
        gatewayId,
        leaseMs: leaseFlags.leaseMs,
      },
      `payment log open in PostgreSQL; gateway ${gatewayId} holds a lease of ${leaseFlags.leaseMs} ms`,
    );
    const asyncAccepted = settings.fsync !== "on" || settings.synchronousCommit === "off";
    let stopLoop: (() => void) | null = null;
    return {
      store,
      description: `${describeStore(choice)} (fsync=${settings.fsync}, synchronous_commit=${settings.synchronousCommit}${asyncAccepted ? "; UNSAFE: asynchronous commits accepted with --unsafe-allow-async-commit" : ""}); gateway ${gatewayId}`,
      takeOver: (coordinator) => {
        stopLoop = keepLease(lease, store, coordinator, leaseFlags.renewEveryMs, logger);
        return () => stopLoop?.();
      },
      setAddress: (address) => lease.setAddress(address),
      close: async () => {
        stopLoop?.();
        await store.close();
        // Nothing more is written by this gateway: the others may take its unfinished payments at once.
        await lease
          .release()
          .catch((error: unknown) => logger.warn({ error: String(error) }, "could not release the lease"));
        await database.end();
      },
    };
  } catch (error) {
    await database.end().catch(() => undefined);
    throw error;
  }
}

/**
 * Every renewEveryMs: renew the lease, then claim a bounded batch of the payments of gateways whose lease
 * expired and drive them. A lease lost stops the process (exit 70): its memory of its payments may be stale.
 * A renewal that fails for another reason (the database unreachable) is tried again at the next tick; the
 * lease's own clock ends it if none succeeds for a whole lease. Returns the loop's stop.
 */
function keepLease(
  lease: GatewayLease,
  store: PostgresCoordinatorStore,
  coordinator: Coordinator,
  renewEveryMs: number,
  logger: Logger,
): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let ticks = 0;
  const tick = async () => {
    ticks += 1;
    try {
      await lease.renew();
    } catch (error) {
      if (error instanceof LeaseLostError) {
        logger.error({ error: error.message, gatewayId: lease.gatewayId }, "lost the lease: exiting");
        process.exit(exitCodes.storeLost);
      }
      logger.warn({ error: String(error) }, "could not renew the lease; trying again");
      return;
    }
    if (ticks % leaseDefaults.forgetEveryTicks === 0) {
      const forgotten = await lease.forgetExpired(leaseDefaults.forgetExpiredAfterMs);
      if (forgotten > 0) logger.info({ gateways: forgotten }, "removed the rows of gateways gone for a day");
    }
    for (;;) {
      const claimed = await store.claimOrphans(leaseDefaults.claimBatchMax);
      if (claimed.length === 0 || stopped) break;
      const from = [...new Set(claimed.map((one) => one.previousOwner ?? "(an earlier build)"))];
      logger.warn(
        { payments: claimed.length, from, paymentIds: claimed.slice(0, 10).map((one) => one.record.paymentId) },
        `took over ${claimed.length} unfinished payments of ${from.join(", ")}: its lease expired`,
      );
      await coordinator.takeOver(claimed.map((one) => one.record));
      if (claimed.length < leaseDefaults.claimBatchMax) break;
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      tick()
        .catch((error: unknown) =>
          logger.warn({ error: String(error) }, "the takeover of expired gateways' payments failed; trying again"),
        )
        .finally(schedule);
    }, renewEveryMs);
  };
  // A first look at once: payments of gateways that died before this one started are taken without a wait.
  void tick()
    .catch((error: unknown) =>
      logger.warn({ error: String(error) }, "the takeover of expired gateways' payments failed; trying again"),
    )
    .finally(schedule);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
