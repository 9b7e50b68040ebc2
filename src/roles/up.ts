// `paynet up`: one command that runs a whole network: the gateway (or, on PostgreSQL, several) and one bank
// process per bank (or, on PostgreSQL, several: --bank-instances), registered with every gateway.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { banksInDataDir, ensureCertificates, seedDataDir } from "./seed.js";
import { roleLogger } from "./process.js";
import { exitCodes } from "./exit-codes.js";
import { storeArgs, type StoreChoice } from "./store-option.js";
import { prettyLogLine } from "../core/observability/log.js";
import { cliEntryPath } from "../package-paths.js";
import { instanceBounds } from "../core/gateway/bank-instances.js";

export interface UpFlags {
  dataDir: string;
  host: string;
  port: number;
  /** Port of the first bank; 0 gives every bank an ephemeral port; absent uses server/current_port_server.txt. */
  bankPort: number | undefined;
  /** Passed on to the gateway and every bank. */
  store: StoreChoice;
  /** Restart a process that dies (false: leave it down, to watch payments abort and the offline queue fill). */
  restart: boolean;
  /** Gateways side by side (more than one only on PostgreSQL; the CLI refuses more with the files store). */
  gateways: number;
  /**
   * Processes per bank (more than one only on PostgreSQL, each with --multi-instance; the CLI refuses more with
   * the files store). 1 starts each bank exactly as a lone `paynet bank` would.
   */
  bankInstances: number;
}

/** `--gateways`: side by side on one machine, each a process with its own lease; beyond this, run them by hand. */
export const upGatewaysMax = 8;
/** `--bank-instances`: a gateway keeps at most this many instances of one bank (instanceBounds.instancesMax). */
export const upBankInstancesMax = instanceBounds.instancesMax;

const readyTimeoutMs = 60_000;
const stopGraceMs = 5_000;
/** A dead process is restarted after this long, doubling per quick death up to restartMaxMs. */
const restartMinMs = 250;
const restartMaxMs = 10_000;
/** An incarnation that lived this long was healthy: the next death starts the backoff again. */
const healthyAfterMs = 30_000;
/** How often up checks that its parent is alive (npm exec, under npx, does not forward SIGTERM). */
const parentCheckMs = 1_000;
const listeningPattern = /listening on ([0-9A-Za-z.:[\]-]+:[0-9]+)/;
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

interface Child {
  name: string;
  process: ChildProcess;
  exited: Promise<number | null>;
  startedAtMs: number;
  /** The last line it wrote: usually why it stopped. */
  lastLine: string;
  /** How it ended: "code 70", "signal SIGKILL" (empty while it runs). */
  ending: string;
}

function start(name: string, args: string[], onLine: (line: string) => void): Child {
  // Children always log JSON lines; up shows them as they are, or readable on a terminal.
  const child = spawn(process.execPath, [cliEntryPath, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, FORCE_COLOR: "0", PAYNET_LOG_FORMAT: "json" },
  });
  const started: Child = {
    name,
    process: child,
    exited: new Promise<number | null>((resolve) =>
      child.on("exit", (code, signal) => {
        started.ending = signal === null ? `code ${code}` : `signal ${signal}`;
        resolve(code);
      }),
    ),
    startedAtMs: Date.now(),
    lastLine: "",
    ending: "",
  };
  for (const stream of [child.stdout, child.stderr])
    createInterface({ input: stream }).on("line", (line) => {
      started.lastLine = line;
      onLine(line);
    });
  return started;
}

/** Resolves with the first match of `pattern` in a child's output, or rejects if it exits or times out first. */
function waitForLine(child: Child, lines: EventTarget, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${child.name} not ready after ${readyTimeoutMs} ms`)),
      readyTimeoutMs,
    );
    const listener = (event: Event) => {
      const match = pattern.exec((event as CustomEvent<string>).detail);
      if (match === null) return;
      clearTimeout(timer);
      lines.removeEventListener("line", listener);
      resolve(match);
    };
    lines.addEventListener("line", listener);
    void child.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${child.name} exited with code ${code} before it was ready`));
    });
  });
}

async function stopAll(children: Child[]): Promise<void> {
  for (const child of children) if (child.process.exitCode === null) child.process.kill("SIGTERM");
  const timer = setTimeout(
    () => children.forEach((child) => child.process.exitCode === null && child.process.kill("SIGKILL")),
    stopGraceMs,
  );
  await Promise.all(children.map((child) => child.exited));
  clearTimeout(timer);
}

export async function runUp(flags: UpFlags): Promise<number> {
  const logger = roleLogger("up");
  const pretty =
    process.env.PAYNET_LOG_FORMAT === "pretty" ||
    (process.env.PAYNET_LOG_FORMAT !== "json" && process.stdout.isTTY === true);
  if (await seedDataDir(flags.dataDir)) logger.info({ dataDir: flags.dataDir }, "seeded the data dir from fixtures/");
  const banks = await banksInDataDir(flags.dataDir);
  const issued = await ensureCertificates(flags.dataDir, banks);
  if (issued.length > 0) logger.info({ certificates: issued.length }, "issued certificates in certificate/");

  const children: Child[] = [];
  let stopping = false;
  /** Until every process is ready a death stops the network; from then on the supervisor restarts it. */
  let ready = false;
  const spawnChild = (name: string, args: () => string[]) => {
    const lines = new EventTarget();
    let backoffMs = restartMinMs;
    const launch = (): Child => {
      const child = start(name, args(), (line) => {
        process.stdout.write(`${pretty ? prettyLogLine(line) : line}\n`);
        lines.dispatchEvent(new CustomEvent("line", { detail: line }));
      });
      children.push(child);
      void child.exited.then((code) => {
        children.splice(children.indexOf(child), 1);
        if (stopping) return;
        const why = { process: name, code, ending: child.ending, lastLine: child.lastLine };
        if (!ready) {
          stopping = true;
          logger.error(why, `${name} exited (${child.ending}) before the network was ready; stopping the network`);
          void stopAll(children).then(() => process.exit(exitCodes.refused));
          return;
        }
        if (!flags.restart) {
          logger.error(why, `${name} exited (${child.ending}); left down (--no-restart)`);
          return;
        }
        if (Date.now() - child.startedAtMs >= healthyAfterMs) backoffMs = restartMinMs;
        logger.error(why, `${name} exited (${child.ending}); restarting it in ${backoffMs} ms`);
        const delayMs = backoffMs;
        backoffMs = Math.min(backoffMs * 2, restartMaxMs);
        setTimeout(() => {
          if (!stopping) launch();
        }, delayMs);
      });
      return child;
    };
    return { child: launch(), lines };
  };

  const stopNetwork = (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({}, why);
    void stopAll(children).then(() => process.exit(code));
  };
  process.on("SIGINT", () => stopNetwork("stopping the network", exitCodes.ok));
  process.on("SIGTERM", () => stopNetwork("stopping the network", exitCodes.ok));
  // Under npx, SIGTERM reaches npm exec, which exits without passing it on: up is then re-parented. No
  // process of the network may outlive the command that started it.
  const parentPid = process.ppid;
  setInterval(() => {
    if (process.ppid !== parentPid) stopNetwork("the parent process is gone; stopping the network", exitCodes.ok);
  }, parentCheckMs).unref();

  /** Gateway i: port P+i (0: any free port, kept across restarts), its own id per start (the default). */
  const startGateway = async (index: number): Promise<string> => {
    let port = flags.port === 0 ? "0" : String(flags.port + index);
    const name = flags.gateways === 1 ? "gateway" : `gateway ${index + 1}`;
    const gateway = spawnChild(name, () => [
      "gateway",
      "--data-dir",
      flags.dataDir,
      "--host",
      flags.host,
      "--port",
      port,
      ...storeArgs(flags.store),
    ]);
    const [, address] = await waitForLine(gateway.child, gateway.lines, listeningPattern);
    port = address!.split(":").at(-1)!;
    return address!;
  };

  /**
   * Instance j of bank i: with --bank-port P, port P + i×N + j (N instances per bank: every process its own port;
   * with one instance, P + i as before); 0, any free port; absent, the next from server/current_port_server.txt,
   * which each process takes under the file's lock, so instances of one bank get distinct ones too. Resolves
   * with its part of the ready line once it is registered with every gateway.
   */
  const startBank = async (
    bank: string,
    bankIndex: number,
    instance: number,
    gatewayAddresses: readonly string[],
  ): Promise<string> => {
    const several = flags.bankInstances > 1;
    const name = several ? `bank ${bank} #${instance + 1}` : `bank ${bank}`;
    let portArgs =
      flags.bankPort === undefined
        ? []
        : ["--port", String(flags.bankPort === 0 ? 0 : flags.bankPort + bankIndex * flags.bankInstances + instance)];
    const started = spawnChild(name, () => [
      "bank",
      "--id",
      bank,
      "--data-dir",
      flags.dataDir,
      "--host",
      flags.host,
      "--gateway",
      gatewayAddresses.join(","),
      ...portArgs,
      // Only with several: a lone bank keeps its exclusive lock, which refuses a second process by mistake.
      ...(several ? ["--multi-instance"] : []),
      ...storeArgs(flags.store),
    ]);
    const [, address] = await waitForLine(started.child, started.lines, listeningPattern);
    portArgs = ["--port", address!.split(":").at(-1)!];
    await Promise.all(
      gatewayAddresses.map((gateway) =>
        waitForLine(started.child, started.lines, new RegExp(`registered with the gateway at ${escaped(gateway)}`)),
      ),
    );
    return `${several ? `${bank} #${instance + 1}` : bank} ${address}`;
  };

  try {
    // A restarted process keeps the port it first listened on: banks and clients know it by that address.
    const gatewayAddresses = await Promise.all(
      Array.from({ length: flags.gateways }, (_, index) => startGateway(index)),
    );
    const bankAddresses = await Promise.all(
      banks.flatMap((bank, bankIndex) =>
        Array.from({ length: flags.bankInstances }, (_, instance) =>
          startBank(bank, bankIndex, instance, gatewayAddresses),
        ),
      ),
    );
    // One gateway keeps the line scripts parse (`ready: gateway H:P, banks …`).
    const gatewaysText =
      gatewayAddresses.length === 1 ? `gateway ${gatewayAddresses[0]}` : `gateways ${gatewayAddresses.join(", ")}`;
    logger.info(
      { gateway: gatewayAddresses[0], gateways: gatewayAddresses, banks: bankAddresses, dataDir: flags.dataDir },
      `ready: ${gatewaysText}, banks ${bankAddresses.join(", ")}; Ctrl-C stops`,
    );
    ready = true;
  } catch (error) {
    if (!stopping) {
      stopping = true;
      logger.error({}, (error as Error).message);
      await stopAll(children);
    }
    return exitCodes.refused;
  }
  return await new Promise<number>(() => undefined); // runs until a signal, or its parent is gone
}
