// The one executable: `paynet gateway | bank | client | up | certs`.
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import chalk from "chalk";
import { armCrashPoint, armPausePoint } from "./core/faults/crash.js";
import { leaseDefaults, runGateway } from "./roles/gateway.js";
import { leaseMsMax, leaseMsMin } from "./core/gateway/store/postgres/gateway-lease.js";
import { nemesisBounds } from "./roles/verify/nemesis.js";
import { finishedRetainedDefault } from "./core/gateway/store/file/gateway-log.js";
import { bankTimeouts, runBank } from "./roles/bank.js";
import { runBalance, runHistory, runPay, runQueue, runSync } from "./roles/client-scripted.js";
import { runInteractive } from "./roles/client-interactive.js";
import { exitCodeHelp, exitCodes, UsageError } from "./roles/exit-codes.js";
import { runUp, upBankInstancesMax, upGatewaysMax } from "./roles/up.js";
import { runPayment, runStatus } from "./roles/status.js";
import { watchIntervalMs } from "./roles/status-watch.js";
import { PortInUseError } from "./core/transport/listen.js";
import { banksInDataDir, ensureCertificates, seedDataDir } from "./roles/seed.js";
import { parseStore, storeOptions } from "./roles/store-option.js";
import { isPostgresUrl } from "./core/durable/postgres/database.js";
import { runDbExport, runDbMigrate } from "./roles/db.js";
import { gatewayAddressesMax, parseAddressList } from "./core/domain/validate.js";

armCrashPoint(process.env.PAYNET_CRASH_AT);
armPausePoint(process.env.PAYNET_PAUSE_AT);

const portOption = (fallback: number | undefined, describe: string) => ({
  type: "number" as const,
  describe,
  ...(fallback === undefined ? {} : { default: fallback }),
});

/** A --store that is neither `files` nor a PostgreSQL URL is a usage error (exit 2), before anything starts. */
const checkStore = (args: { store: string }): true | string => {
  try {
    parseStore(args.store);
    return true;
  } catch (error) {
    return (error as Error).message;
  }
};

/** A --gateway list (`host:port[,host:port…]`, at most 16) that does not parse is a usage error (exit 2). */
const checkGatewayList = (args: { gateway?: unknown }): true | string => {
  if (args.gateway === undefined) return true;
  // Given twice, yargs makes an array: the last wins elsewhere, but a list belongs in one flag.
  if (typeof args.gateway !== "string") return "--gateway takes one list, host:port[,host:port…]; give it once";
  try {
    parseAddressList(args.gateway, "--gateway");
    return true;
  } catch (error) {
    return (error as Error).message;
  }
};

const gatewayListOption = {
  type: "string" as const,
  describe: `gateways to use, host:port[,host:port…] (at most ${gatewayAddressesMax}; a call one does not answer goes to the next; default: client/current_port_server.txt, else 127.0.0.1:8080)`,
};

const clientEpilogue = `The password comes from PAYNET_PASSWORD or --password-stdin; on a terminal, with neither, it is asked for (hidden).\n${exitCodeHelp("client")}`;

function clientOptions<T>(argv: Argv<T>) {
  return argv
    .epilogue(clientEpilogue)
    .option("user", { type: "string", demandOption: true, describe: "your username" })
    .option("bank", { type: "string", demandOption: true, describe: "your bank" })
    .option("json", { type: "boolean", default: false, describe: "print one JSON object" })
    .option("password-stdin", {
      type: "boolean",
      default: false,
      describe: "read the password from standard input instead of PAYNET_PASSWORD",
    });
}

function listOptions<T>(argv: Argv<T>) {
  return argv
    .epilogue(exitCodeHelp("client"))
    .option("user", { type: "string", describe: "only this user's payments" })
    .option("bank", { type: "string", describe: "only this bank's payments" })
    .option("json", { type: "boolean", default: false, describe: "print one JSON object" });
}

/** `paynet verify`'s defaults of the flags whose old spellings are still accepted (so neither has a yargs default). */
const verifyDefaults = Object.freeze({ durationS: 30, killEveryMs: 2_000, recoveryTimeoutMs: 60_000 });

/** Time flags renamed to carry their unit: [new, old]. */
const verifyRenamedFlags = [
  ["duration-s", "duration"],
  ["kill-every-ms", "kill-every"],
  ["recovery-timeout-ms", "recovery-timeout"],
] as const;

/** A flag given under both its spellings is a usage error: which one meant it is a guess. */
function oneSpelling(pairs: ReadonlyArray<readonly [string, string]>) {
  return (args: Record<string, unknown>): true | string => {
    for (const [current, old] of pairs)
      if (args[current] !== undefined && args[old] !== undefined)
        return `--${old} is the old spelling of --${current}: give one of them`;
    return true;
  };
}

/** A busy port said with who probably holds it: another process of the same role. */
function portInUseAs(role: string): (error: unknown) => never {
  return (error) => {
    throw error instanceof PortInUseError ? error.as(role) : error;
  };
}

async function finish(code: Promise<number>): Promise<void> {
  process.exitCode = await code;
}

/**
 * For a command that calls gateways and is done once it has answered: exits then, once standard output and error
 * are flushed. grpc-js keeps a connection attempt to a gateway that took the TCP connection but never completes the
 * TLS handshake (a hung one) open after its channel is closed, which would keep the process alive, answer given,
 * for as long as that gateway hangs.
 */
async function exitWhenAnswered(code: Promise<number>): Promise<void> {
  const exitCode = await code;
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((done) => stream.write("", done))));
  process.exit(exitCode);
}

// `paynet` alone is someone finding out what it does: the help, exit 0, rather than a usage error.
const argv = hideBin(process.argv);

await yargs(argv.length === 0 ? ["--help"] : argv)
  .scriptName("paynet")
  .usage("$0 <command>\n\nA payment network: a gateway and banks over gRPC with mutual TLS and two-phase commit.")
  .option("data-dir", {
    type: "string",
    default: ".",
    describe: "root of certificate/, payment_gateway/, server/ and client/",
  })
  .command(
    "up",
    "start the gateway and one bank per bank in server/dummydata.csv (seeding the data dir from fixtures/ and issuing certificates if missing)",
    (argv) =>
      argv
        .option("host", { type: "string", default: "127.0.0.1" })
        .option("port", portOption(8080, "gateway port (0: any free port)"))
        .option(
          "bank-port",
          portOption(
            undefined,
            "first bank port, the next bank (or instance) on the next port (0: any free port; default: server/current_port_server.txt)",
          ),
        )
        .option("restart", {
          type: "boolean",
          default: true,
          describe: "restart a process that dies, with capped backoff (--no-restart: leave it down)",
        })
        .option("gateways", {
          type: "number",
          default: 1,
          describe: `gateways side by side on the PostgreSQL store (1-${upGatewaysMax}), on ports P, P+1, … (--port 0: free ports); every bank registers with each`,
        })
        .option("bank-instances", {
          type: "number",
          default: 1,
          describe: `processes per bank on the PostgreSQL store (1-${upBankInstancesMax}), each with --multi-instance and its own port (--bank-port P: bank i's instance j on P + i×N + j); the gateways spread each bank's calls over them`,
        })
        .epilogue(exitCodeHelp("up"))
        .options(storeOptions)
        .check(checkStore)
        .check((args) => {
          const gateways = Number(args.gateways);
          if (!Number.isSafeInteger(gateways) || gateways < 1 || gateways > upGatewaysMax)
            return `--gateways must be a whole number from 1 to ${upGatewaysMax}, got ${String(args.gateways)}`;
          if (gateways > 1 && parseStore(args.store).kind === "files")
            return `--gateways ${gateways} needs --store postgres://…: the files store is one gateway process's (it holds the data dir's lock), while gateways on PostgreSQL share the payment log and take over each other's payments`;
          return true;
        })
        .check((args) => {
          const instances = Number(args.bankInstances);
          if (!Number.isSafeInteger(instances) || instances < 1 || instances > upBankInstancesMax)
            return `--bank-instances must be a whole number from 1 to ${upBankInstancesMax}, got ${String(args.bankInstances)}`;
          if (instances > 1 && parseStore(args.store).kind === "files")
            return `--bank-instances ${instances} needs --store postgres://…: a bank's files are one process's (it holds their lock), while instances on PostgreSQL share the bank's schema`;
          return true;
        }),
    (args) =>
      finish(
        runUp({
          dataDir: args.dataDir,
          host: args.host,
          port: args.port ?? 8080,
          bankPort: args.bankPort,
          store: parseStore(args.store, args["unsafe-allow-async-commit"]),
          restart: args.restart,
          gateways: args.gateways,
          bankInstances: args.bankInstances,
        }),
      ),
  )
  .command(
    "bench",
    "benchmark: start a network in a temp dir (or target one with --gateway), run N payments from C clients, print throughput, latency percentiles, counts and a conservation check (exit 0 conserved, 1 not, 2 usage)",
    (argv) =>
      argv
        .option("payments", { type: "number", default: 2000, describe: "payments to make and time" })
        .epilogue(exitCodeHelp("bench"))
        .option("warmup", {
          type: "number",
          describe:
            "payments to make first, closed loop and not timed, so that the processes' hot code is compiled (checked like the rest; 0 for none; default: as many as --payments, at most 10,000)",
        })
        .option("concurrency", {
          type: "number",
          default: 64,
          describe: "concurrent clients, each logged in as a different account",
        })
        .option("accounts", {
          type: "number",
          default: 1000,
          describe: "accounts to create, spread evenly over 2 banks (ignored with --gateway)",
        })
        .option("rate", {
          type: "number",
          describe:
            "open loop: start this many payments per second (latency counts from each due time); default: closed loop",
        })
        .option("batch", {
          type: "number",
          default: 1,
          describe: "payments per request: 1 uses MakePayment, more uses the batched MakePayments (at most 1000)",
        })
        .option("same-bank-percent", {
          type: "number",
          default: 0,
          describe: "percent of payments to an account of the payer's own bank",
        })
        .option("balance", {
          type: "string",
          describe: "initial balance of every created account (default: enough for every payment, at least 1000.00)",
        })
        .option("seed", {
          type: "number",
          default: 1,
          describe: "seed of the receivers and amounts, so runs are comparable",
        })
        .option("call-timeout-ms", { type: "number", default: 20_000, describe: "deadline of each payment call" })
        .option("timeout-ms", { type: "number", default: 600_000, describe: "start no payment after this long" })
        .option("settle-timeout-ms", {
          type: "number",
          default: 120_000,
          describe: "how long to wait for every payment to finish before checking",
        })
        .option("gateway", {
          type: "string",
          describe:
            "target this running gateway host:port; accounts and certificates from --data-dir, password from PAYNET_PASSWORD",
        })
        .option("gateways", {
          type: "number",
          default: 1,
          describe:
            "gateways the bench starts side by side (1-5, PostgreSQL store only); the clients' connections are spread over them",
        })
        .option("bank-instances", {
          type: "number",
          default: 1,
          describe:
            "processes per bank the bench starts (1-8, PostgreSQL store only), each with --multi-instance: the shared ledger's throughput",
        })
        .option("keep", { type: "boolean", default: false, describe: "keep the temp data dir" })
        .option("cpu-prof", {
          type: "string",
          describe:
            "write a V8 CPU profile of the gateway and of each bank into this dir (gateway.cpuprofile, bank-NAME.cpuprofile), for Chrome DevTools",
        })
        .option("json", { type: "boolean", default: false, describe: "print one JSON object" })
        .options(storeOptions)
        .check(checkStore),
    async (args) => {
      const { runBench } = await import("./roles/bench/bench.js");
      await finish(
        runBench({
          dataDir: args.dataDir,
          store: parseStore(args.store, args["unsafe-allow-async-commit"]),
          gateway: args.gateway,
          gateways: args.gateways,
          bankInstances: args.bankInstances,
          payments: args.payments,
          warmup: args.warmup,
          concurrency: args.concurrency,
          accounts: args.accounts,
          rate: args.rate,
          batch: args.batch,
          sameBankPercent: args.sameBankPercent,
          balance: args.balance,
          seed: args.seed,
          callTimeoutMs: args.callTimeoutMs,
          timeoutMs: args.timeoutMs,
          settleTimeoutMs: args.settleTimeoutMs,
          keep: args.keep,
          cpuProf: args.cpuProf,
          json: args.json,
        }),
      );
    },
  )
  .command(
    "verify",
    "a Jepsen-style bank test: a new network in a temp dir, random payments while processes are killed, paused, crashed and partitioned, then every invariant checked (exit 0 all hold, 1 a violation, 2 usage, 3 could not run)",
    (argv) =>
      argv
        .option("duration-s", {
          type: "number",
          describe: `seconds of traffic and faults (default ${verifyDefaults.durationS})`,
        })
        .option("clients", { type: "number", default: 4, describe: "concurrent clients" })
        .epilogue(exitCodeHelp("verify"))
        .option("banks", { type: "number", default: 3, describe: "banks (2-16)" })
        .option("accounts", { type: "number", default: 8, describe: "accounts per bank" })
        .option("kill-every-ms", {
          type: "number",
          describe: `mean milliseconds between faults (0: no faults; default ${verifyDefaults.killEveryMs})`,
        })
        .option("pause-max-ms", {
          type: "number",
          default: nemesisBounds.pauseMaxMsDefault,
          describe: "longest pause of a gateway or bank (SIGSTOP), in milliseconds",
        })
        .option("seed", {
          type: "number",
          describe: "seed of every random choice, for a reproducible schedule (default: random, printed)",
        })
        .option("faults", {
          type: "string",
          default: "all",
          describe:
            "fault kinds: all, none, or a comma list of kill-gateway, kill-bank, pause-gateway, pause-bank, crash-point, partition-bank, partition-clients, cut-store-sessions (PostgreSQL only), partition-gateway-store, partition-gateway-banks (several gateways only)",
        })
        .option("gateways", {
          type: "number",
          default: 1,
          describe:
            "gateways side by side on the PostgreSQL store (1-5); faults on gateways take turns, and every takeover is timed",
        })
        .option("crash-points", {
          type: "string",
          default: "all",
          describe: "crash points the crash-point fault arms: all or a comma list (see PAYNET_CRASH_AT in the README)",
        })
        .option("recovery-timeout-ms", {
          type: "number",
          describe: `milliseconds to wait for recovery after healing (default ${verifyDefaults.recoveryTimeoutMs})`,
        })
        // The spellings from before time flags carried their unit: hidden, still accepted, so scripts keep working.
        .option("duration", { type: "number", hidden: true })
        .option("kill-every", { type: "number", hidden: true })
        .option("recovery-timeout", { type: "number", hidden: true })
        .check(oneSpelling(verifyRenamedFlags))
        .option("unsafe-late-decision-log", {
          type: "boolean",
          default: false,
          describe: "run a deliberately broken gateway (PAYNET_UNSAFE_LATE_DECISION_LOG=1), to see verify catch it",
        })
        .option("keep", { type: "boolean", default: false, describe: "keep the temp data dir for inspection" })
        .option("json", { type: "boolean", default: false, describe: "print one JSON object" })
        .options(storeOptions)
        .check(checkStore),
    async (args) => {
      const { runVerify } = await import("./roles/verify/verify.js");
      await finish(
        runVerify({
          durationS: args.durationS ?? args.duration ?? verifyDefaults.durationS,
          gateways: args.gateways,
          clients: args.clients,
          banks: args.banks,
          accounts: args.accounts,
          killEveryMs: args.killEveryMs ?? args.killEvery ?? verifyDefaults.killEveryMs,
          pauseMaxMs: args.pauseMaxMs,
          seed: args.seed,
          faults: args.faults,
          crashPoints: args.crashPoints,
          recoveryTimeoutMs: args.recoveryTimeoutMs ?? args.recoveryTimeout ?? verifyDefaults.recoveryTimeoutMs,
          unsafeLateDecisionLog: args.unsafeLateDecisionLog,
          keep: args.keep,
          json: args.json,
          store: parseStore(args.store, args["unsafe-allow-async-commit"]),
        }),
      );
    },
  )
  .command(
    "gateway",
    "run the payment gateway (2PC coordinator)",
    (argv) =>
      argv
        .option("host", { type: "string", default: "127.0.0.1" })
        .option("port", portOption(8080, "port (0: any free port)"))
        .epilogue(exitCodeHelp("gateway"))
        .option(
          "metrics-port",
          portOption(undefined, "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)"),
        )
        .option("records-retained", {
          type: "number",
          default: finishedRetainedDefault,
          describe:
            "finished payments kept in memory and in transaction_logs.json; older ones move to transaction_archive.sqlite and are still answered",
        })
        // The archive's index of earlier builds was cut in chunks of this many payments; the SQLite archive has
        // no such knob. Accepted (and warned about) so that a command line or a script written for them still
        // starts the gateway.
        .option("archive-chunk-records", {
          type: "number",
          hidden: true,
          deprecated: "ignored: the archive is a SQLite database now",
        })
        .options(storeOptions)
        .option("lease-ms", {
          type: "number",
          default: leaseDefaults.leaseMs,
          describe:
            "with --store postgres: this gateway's lease on its payments; if it is not renewed for this long, another gateway on the database takes them over",
        })
        .option("lease-renew-ms", {
          type: "number",
          default: leaseDefaults.renewEveryMs,
          describe:
            "with --store postgres: how often the lease is renewed and the payments of expired gateways are looked for",
        })
        .option("gateway-id", {
          type: "string",
          describe:
            "with --store postgres: this gateway's name in the gateways table, unique per start (default gw-HOST-PID-RANDOM)",
        })
        .check(checkStore)
        .check((args) => {
          const retained = Number(args.recordsRetained);
          if (!Number.isSafeInteger(retained) || retained < 0)
            return `--records-retained must be a whole number ≥ 0, got ${String(args.recordsRetained)}`;
          const leaseMs = Number(args.leaseMs);
          if (!Number.isSafeInteger(leaseMs) || leaseMs < leaseMsMin || leaseMs > leaseMsMax)
            return `--lease-ms must be a whole number of milliseconds in ${leaseMsMin}..${leaseMsMax}, got ${String(args.leaseMs)}`;
          const renewMs = Number(args.leaseRenewMs);
          if (!Number.isSafeInteger(renewMs) || renewMs < 10 || renewMs * 2 > leaseMs)
            return `--lease-renew-ms must be a whole number of milliseconds from 10 to half of --lease-ms (${Math.floor(leaseMs / 2)}), got ${String(args.leaseRenewMs)}`;
          if (
            args.gatewayId !== undefined &&
            (typeof args.gatewayId !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(args.gatewayId))
          )
            return `--gateway-id must be 1 to 64 letters, digits, '.', '_' or '-', got ${JSON.stringify(args.gatewayId)}`;
          return true;
        }),
    (args) =>
      runGateway({
        dataDir: args.dataDir,
        host: args.host,
        port: args.port ?? 8080,
        metricsPort: args.metricsPort,
        recordsRetained: args.recordsRetained,
        archiveChunkRecordsIgnored: args.archiveChunkRecords !== undefined,
        store: parseStore(args.store, args["unsafe-allow-async-commit"]),
        lease: { leaseMs: args.leaseMs, renewEveryMs: args.leaseRenewMs, gatewayId: args.gatewayId },
        unsafeLogDecisionLate: process.env.PAYNET_UNSAFE_LATE_DECISION_LOG === "1",
      }).catch(portInUseAs("gateway")),
  )
  .command(
    "bank",
    "run one bank server",
    (argv) =>
      argv
        .epilogue(exitCodeHelp("bank"))
        .option("id", {
          type: "string",
          describe:
            "bank name (e.g. SBI; any case, if only one bank is so spelled) or 1-based number into the banks of server/dummydata.csv; without it, asked for on a terminal",
        })
        .option("host", { type: "string", default: "127.0.0.1" })
        .option(
          "port",
          portOption(undefined, "port (0: any free port; default: the next from server/current_port_server.txt)"),
        )
        .option("gateway", {
          type: "string",
          describe: `gateways to register with and heartbeat, host:port[,host:port…] (at most ${gatewayAddressesMax}; default: every one in client/current_port_server.txt, else 127.0.0.1:8080)`,
        })
        .check(checkGatewayList)
        .option("hold-timeout-ms", {
          type: "number",
          default: bankTimeouts.holdTimeoutMsDefault,
          describe: "how long a prepared hold waits before the bank asks the gateway for the decision",
        })
        .option(
          "metrics-port",
          portOption(undefined, "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)"),
        )
        .option("multi-instance", {
          type: "boolean",
          default: false,
          describe:
            "with --store postgres: several processes of this bank may serve from its schema at once (each on its own port, every operation one database transaction)",
        })
        .options(storeOptions)
        .check(checkStore)
        .check((args) =>
          args.multiInstance && !isPostgresUrl(String(args.store))
            ? "--multi-instance needs --store postgres://…: a bank's files are one process's"
            : true,
        ),
    (args) =>
      runBank({
        multiInstance: args.multiInstance,
        dataDir: args.dataDir,
        id: args.id,
        host: args.host,
        port: args.port,
        gateway: args.gateway,
        holdTimeoutMs: args.holdTimeoutMs,
        metricsPort: args.metricsPort,
        store: parseStore(args.store, args["unsafe-allow-async-commit"]),
      }).catch(portInUseAs("bank")),
  )
  .command(
    "client",
    "the client: an interactive menu, or a scripted command",
    (argv) =>
      argv
        .option("gateway", gatewayListOption)
        .check(checkGatewayList)
        .command(
          "balance",
          "print your balance",
          (sub) => clientOptions(sub),
          (args) =>
            exitWhenAnswered(
              runBalance({
                dataDir: args.dataDir,
                gateway: args.gateway,
                user: args.user,
                bank: args.bank,
                json: args.json,
                passwordStdin: args.passwordStdin,
              }),
            ),
        )
        .command(
          "pay",
          "make a payment",
          (sub) =>
            clientOptions(sub)
              .option("to", { type: "string", demandOption: true, describe: "receiver's username" })
              .option("to-bank", { type: "string", demandOption: true, describe: "receiver's bank" })
              .option("amount", { type: "string", demandOption: true, describe: "amount, e.g. 12.50" })
              .option("id", {
                type: "string",
                describe: "idempotency key (default: a new SHA-256 id); reuse it to retry safely",
              })
              .option("offline", {
                type: "boolean",
                default: false,
                describe: "queue the payment without contacting the gateway",
              }),
          (args) =>
            exitWhenAnswered(
              runPay({
                dataDir: args.dataDir,
                gateway: args.gateway,
                user: args.user,
                bank: args.bank,
                json: args.json,
                passwordStdin: args.passwordStdin,
                to: args.to,
                toBank: args.toBank,
                amount: args.amount,
                id: args.id,
                offline: args.offline,
              }),
            ),
        )
        .command(
          "sync",
          "send your queued payments, in order, each with its saved id",
          (sub) =>
            clientOptions(sub)
              .option("watch", {
                type: "boolean",
                default: false,
                describe: "wait for the gateway (connectivity) and keep sending until the queue is empty",
              })
              .option("watch-timeout-ms", {
                type: "number",
                default: 600_000,
                describe: "give up watching after this long",
              }),
          (args) =>
            exitWhenAnswered(
              runSync({
                dataDir: args.dataDir,
                gateway: args.gateway,
                user: args.user,
                bank: args.bank,
                json: args.json,
                passwordStdin: args.passwordStdin,
                watch: args.watch,
                watchTimeoutMs: args.watchTimeoutMs,
              }),
            ),
        )
        .command(
          "queue",
          "list the payments waiting in client/offline_payments.json",
          (sub) => listOptions(sub),
          (args) => finish(runQueue({ dataDir: args.dataDir, user: args.user, bank: args.bank, json: args.json })),
        )
        .command(
          "history",
          "list the final outcomes of your payments (client/payment_history.json)",
          (sub) => listOptions(sub),
          (args) => finish(runHistory({ dataDir: args.dataDir, user: args.user, bank: args.bank, json: args.json })),
        )
        .epilogue(clientEpilogue),
    (args) => exitWhenAnswered(runInteractive({ dataDir: args.dataDir, gateway: args.gateway })),
  )
  .command(
    "status",
    "operator view: banks up/down, payments by state, the oldest in-doubt payments, holds, the local offline queue (operator certificate)",
    (argv) =>
      argv
        .option("gateway", gatewayListOption)
        .check(checkGatewayList)
        .option("json", { type: "boolean", default: false })
        .epilogue(exitCodeHelp("status"))
        .option("watch", {
          type: "boolean",
          default: false,
          describe:
            "redraw until Ctrl-C (exit 0): banks with their holds, payments per second, in-doubt payments; plain blocks (or JSON lines) when not a terminal",
        })
        .option("interval-ms", {
          type: "number",
          describe: `with --watch, milliseconds between samples (${watchIntervalMs.min} to ${watchIntervalMs.max}, default ${watchIntervalMs.default})`,
        }),
    (args) =>
      exitWhenAnswered(
        runStatus({
          dataDir: args.dataDir,
          gateway: args.gateway,
          json: args.json,
          watch: args.watch,
          intervalMs: args.intervalMs,
        }),
      ),
  )
  .command(
    "payment <id>",
    "operator view of one payment by its idempotency key (or a unique prefix of at least 8 characters): state, timestamps of each phase, reason",
    (argv) =>
      argv
        .positional("id", { type: "string", demandOption: true })
        .option("gateway", gatewayListOption)
        .check(checkGatewayList)
        .epilogue(exitCodeHelp("payment"))
        .option("json", { type: "boolean", default: false }),
    (args) =>
      exitWhenAnswered(runPayment({ dataDir: args.dataDir, gateway: args.gateway, json: args.json, id: args.id })),
  )
  .command(
    "certs",
    "issue the CA and per-role certificates (gateway, each bank, client, operator) into certificate/",
    (argv) =>
      argv
        .epilogue(exitCodeHelp("certs"))
        .option("banks", {
          type: "string",
          describe: "comma-separated bank names (default: the banks of server/dummydata.csv)",
        })
        .option("host", {
          type: "array",
          string: true,
          default: [] as string[],
          describe: "extra host name or IP the gateway certificate is valid for",
        })
        .option("force", {
          type: "boolean",
          default: false,
          describe: "reissue every certificate (the CA and the session key are kept)",
        }),
    async (args) => {
      if (args.banks === undefined) await seedDataDir(args.dataDir);
      const banks =
        args.banks === undefined ? await banksInDataDir(args.dataDir) : args.banks.split(",").filter(Boolean);
      const written = await ensureCertificates(args.dataDir, banks, args.host, args.force);
      process.stdout.write(
        written.length === 0
          ? "certificates already present\n"
          : `issued:\n${written.map((path) => `  ${path}`).join("\n")}\n`,
      );
    },
  )
  .command(
    "db",
    "maintain the PostgreSQL store (--store postgres://…): migrate its schemas, export a bank's accounts",
    (argv) =>
      argv
        .epilogue(exitCodeHelp("db"))
        .options(storeOptions)
        .check(checkStore)
        .command(
          "migrate",
          "apply the schema migrations of the gateway and of each bank (processes also do it at start)",
          (sub) =>
            sub.epilogue(exitCodeHelp("db")).option("bank", {
              type: "string",
              describe: "comma-separated banks (default: the banks of server/dummydata.csv)",
            }),
          (args) =>
            finish(
              runDbMigrate({
                dataDir: args.dataDir,
                store: parseStore(args.store, args["unsafe-allow-async-commit"]),
                banks: args.bank?.split(",").filter(Boolean),
              }),
            ),
        )
        .command(
          "export",
          "write a bank's accounts to stdout in the seed's CSV format (username,balance,password,bank)",
          (sub) =>
            sub
              .epilogue(exitCodeHelp("db"))
              .option("bank", { type: "string", demandOption: true, describe: "the bank" }),
          (args) =>
            finish(
              runDbExport({
                dataDir: args.dataDir,
                store: parseStore(args.store, args["unsafe-allow-async-commit"]),
                bank: args.bank,
              }),
            ),
        )
        .demandCommand(1, "name a db command: migrate or export"),
  )
  .demandCommand(1, "name a command")
  .epilogue("Each command's --help lists its exit codes; 2 is always a usage error (nothing was done).")
  .strict()
  .help()
  .fail((message, error) => {
    // yargs reports a failed .check() (a bad flag value) with only its message (as `message`, and on some
    // paths as a string in `error`) or as a YError: a usage error. A thrown Error is a failure.
    const thrown: unknown = error;
    if (thrown instanceof UsageError) {
      // Found by a command after parsing (an --id naming no bank): said as is, since the message names the fix.
      process.stderr.write(chalk.red(`paynet: ${thrown.message}\n`));
      process.exit(exitCodes.usage);
    }
    const usage = !(thrown instanceof Error) || thrown.name === "YError";
    if (!usage) {
      process.stderr.write(chalk.red(`paynet: ${error.message}\n`));
      process.exit(exitCodes.refused);
    }
    process.stderr.write(chalk.red(`paynet: ${message}\n`) + "run with --help for usage\n");
    process.exit(exitCodes.usage);
  })
  .parseAsync();
