// `paynet up`: one command that runs a whole network: the gateway and one bank process per bank.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { banksInDataDir, ensureCertificates, seedDataDir } from "./seed.js";
import { roleLogger } from "./process.js";
import { storeArgs, type StoreChoice } from "./store-option.js";
import { prettyLogLine } from "../core/observability/log.js";

export interface UpFlags {
  dataDir: string;
  host: string;
  port: number;
  /** Port of the first bank; 0 gives every bank an ephemeral port; absent uses server/current_port_server.txt. */
  bankPort: number | undefined;
  /** Passed on to the gateway and every bank. */
  store: StoreChoice;
}

const readyTimeoutMs = 60_000;
const stopGraceMs = 5_000;
const listeningPattern = /listening on ([0-9A-Za-z.:[\]-]+:[0-9]+)/;
const cliPath = fileURLToPath(new URL("../cli.js", import.meta.url));

interface Child {
  name: string;
  process: ChildProcess;
  exited: Promise<number | null>;
}

function start(name: string, args: string[], onLine: (line: string) => void): Child {
  // Children always log JSON lines; up shows them as they are, or readable on a terminal.
  const child = spawn(process.execPath, [cliPath, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, FORCE_COLOR: "0", PAYNET_LOG_FORMAT: "json" },
  });
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on("line", onLine);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { name, process: child, exited };
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
  const spawnChild = (name: string, args: string[]) => {
    const lines = new EventTarget();
    const child = start(name, args, (line) => {
      process.stdout.write(`${pretty ? prettyLogLine(line) : line}\n`);
      lines.dispatchEvent(new CustomEvent("line", { detail: line }));
    });
    children.push(child);
    void child.exited.then((code) => {
      if (stopping) return;
      stopping = true;
      logger.error({ process: name, code }, `${name} exited unexpectedly; stopping the network`);
      void stopAll(children).then(() => process.exit(1));
    });
    return { child, lines };
  };

  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    logger.info({}, "stopping the network");
    void stopAll(children).then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const gateway = spawnChild("gateway", [
      "gateway",
      "--data-dir",
      flags.dataDir,
      "--host",
      flags.host,
      "--port",
      String(flags.port),
      ...storeArgs(flags.store),
    ]);
    const [, gatewayAddress] = await waitForLine(gateway.child, gateway.lines, listeningPattern);
    const bankAddresses = await Promise.all(
      banks.map(async (bank, index) => {
        const portArgs =
          flags.bankPort === undefined ? [] : ["--port", String(flags.bankPort === 0 ? 0 : flags.bankPort + index)];
        const started = spawnChild(`bank ${bank}`, [
          "bank",
          "--id",
          bank,
          "--data-dir",
          flags.dataDir,
          "--host",
          flags.host,
          "--gateway",
          gatewayAddress!,
          ...portArgs,
          ...storeArgs(flags.store),
        ]);
        const [, address] = await waitForLine(started.child, started.lines, listeningPattern);
        await waitForLine(started.child, started.lines, /registered with the gateway/);
        return `${bank} ${address}`;
      }),
    );
    logger.info(
      { gateway: gatewayAddress, banks: bankAddresses, dataDir: flags.dataDir },
      `ready: gateway ${gatewayAddress}, banks ${bankAddresses.join(", ")}; Ctrl-C stops`,
    );
  } catch (error) {
    if (!stopping) {
      stopping = true;
      logger.error({}, (error as Error).message);
      await stopAll(children);
    }
    return 1;
  }
  return await new Promise<number>(() => undefined); // runs until a signal or a child's exit
}
