// The network `paynet bench` measures: by default a fresh one in a temporary data dir (generated accounts,
// certificates, a gateway and one bank per bank as child processes, or on PostgreSQL several of each: --gateways,
// --bank-instances), or an existing one (--gateway).
import { createScratchDatabase } from "../../core/durable/postgres/database.js";
import { storeArgs, type StoreChoice } from "../store-option.js";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serializeAccountsCsv } from "../../core/bank/store/file/accounts-csv.js";
import { generateAccountRows } from "./accounts.js";
import { issueCertificates } from "../../core/transport/certificates.js";
import { hashPassword } from "../../core/bank/passwords.js";
import { dataPaths } from "../../core/durable/paths.js";
import { cliEntryPath } from "../../package-paths.js";

export const benchNetworkLimits = Object.freeze({
  readyTimeoutMs: 120_000,
  stopGraceMs: 10_000,
  /** Output lines kept per child, shown when it fails. */
  tailLinesMax: 40,
});
/** Last output lines of a child that exited during the run, in the report. */
const exitLinesShown = 5;

const listeningPattern = /listening on ([0-9A-Za-z.:[\]-]+:[0-9]+)/;
const registeredPattern = /registered with the gateway/;

/** A process of the network that exited while the bench still needed it. */
export interface ChildExit {
  name: string;
  code: number | null;
  signal: string | null;
  lastLines: string[];
}

export interface BenchNetwork {
  readonly dataDir: string;
  /** One address, or several gateways side by side on one PostgreSQL database (--gateways). */
  readonly gatewayAddresses: readonly string[];
  /** Whether the bench started it (and so stops it). */
  readonly owned: boolean;
  /** Where its processes keep their state (for a PostgreSQL store the bench started: a database of its own). */
  readonly store: StoreChoice;
  /** The started processes that have exited before close(), in the order they did. */
  unexpectedExits(): ChildExit[];
  /** The processes the bench started, by name (none for an existing network). */
  processes(): Array<{ name: string; pid: number }>;
  /** Stops the children, and removes the data dir unless kept. */
  close(): Promise<void>;
}

class Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Set when the process exits: its code and signal. */
  exit: { code: number | null; signal: string | null } | null = null;
  readonly #tail: string[] = [];
  #waiters: Array<{ pattern: RegExp; left: number; resolve: (match: RegExpExecArray) => void }> = [];

  constructor(name: string, args: string[], env: NodeJS.ProcessEnv, nodeArgs: readonly string[] = []) {
    this.name = name;
    this.process = spawn(process.execPath, [...nodeArgs, cliEntryPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...env, FORCE_COLOR: "0", PAYNET_LOG_FORMAT: "json" },
    });
    for (const stream of [this.process.stdout!, this.process.stderr!])
      createInterface({ input: stream }).on("line", (line) => this.#onLine(line));
    this.exited = new Promise((resolve) =>
      this.process.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(code);
      }),
    );
  }

  get lastLines(): string[] {
    return [...this.#tail];
  }

  #onLine(line: string): void {
    this.#tail.push(line);
    if (this.#tail.length > benchNetworkLimits.tailLinesMax) this.#tail.shift();
    this.#waiters = this.#waiters.filter((waiter) => {
      const match = waiter.pattern.exec(line);
      if (match === null) return true;
      waiter.left -= 1;
      if (waiter.left > 0) return true;
      waiter.resolve(match);
      return false;
    });
  }

  /**
   * The `count`-th next output line matching `pattern` (counted from now, so lines of one chunk are not missed);
   * rejects with the child's last lines if it exits or times out.
   */
  waitFor(pattern: RegExp, count = 1): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const fail = (why: string) =>
        reject(new Error(`${this.name} ${why}; its last output:\n${this.#tail.join("\n")}`));
      const timer = setTimeout(
        () => fail(`not ready after ${benchNetworkLimits.readyTimeoutMs} ms`),
        benchNetworkLimits.readyTimeoutMs,
      );
      this.#waiters.push({ pattern, left: count, resolve: (match) => (clearTimeout(timer), resolve(match)) });
      void this.exited.then((code) => (clearTimeout(timer), fail(`exited with code ${code} before it was ready`)));
    });
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }
}

async function stopChildren(children: readonly Child[]): Promise<void> {
  for (const child of children) if (child.running) child.process.kill("SIGTERM");
  const timer = setTimeout(
    () => children.forEach((child) => child.running && child.process.kill("SIGKILL")),
    benchNetworkLimits.stopGraceMs,
  );
  await Promise.all(children.map((child) => child.exited));
  clearTimeout(timer);
}

export interface OwnNetworkOptions {
  accounts: number;
  banks: readonly string[];
  balanceMinor: bigint;
  password: string;
  keep: boolean;
  env: NodeJS.ProcessEnv;
  /** Write a V8 CPU profile of each child (gateway.cpuprofile, bank-NAME.cpuprofile) into this dir when it stops. */
  cpuProfileDir: string | undefined;
  /** files, or the PostgreSQL server on which the bench creates a database of its own (dropped after unless kept). */
  store: StoreChoice;
  /** Gateways side by side (PostgreSQL only above 1); each bank registers with every one. */
  gateways: number;
  /** Processes per bank (PostgreSQL only above 1, each with --multi-instance on the bank's shared schema). */
  bankInstances: number;
}

/** Node flags that make a child write its CPU profile as `<fileStem>.cpuprofile` when it exits. */
function profilerArgs(options: OwnNetworkOptions, fileStem: string): string[] {
  if (options.cpuProfileDir === undefined) return [];
  return ["--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir, "--cpu-prof-name", `${fileStem}.cpuprofile`];
}

/** Writes the generated accounts file and the certificates into a new temporary data dir. */
async function prepareDataDir(options: OwnNetworkOptions): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), "paynet-bench-"));
  const paths = dataPaths(dataDir);
  await mkdir(join(dataDir, "server"), { recursive: true });
  const passwordHash = await hashPassword(options.password);
  const rows = generateAccountRows({
    accounts: options.accounts,
    banks: options.banks,
    balanceMinor: options.balanceMinor,
    passwordHash,
  });
  await writeFile(paths.accountsCsv, serializeAccountsCsv(rows));
  await issueCertificates({ certificateDir: paths.certificateDir, banks: options.banks });
  return dataDir;
}

/** Instance `instance` (from 0) of a bank, on a free port; with several, each one of the bank's shared schema. */
function startBank(
  options: OwnNetworkOptions,
  dataDir: string,
  store: StoreChoice,
  gatewayAddresses: readonly string[],
  bank: string,
  instance: number,
): Child {
  const several = options.bankInstances > 1;
  return new Child(
    several ? `bank ${bank} #${instance + 1}` : `bank ${bank}`,
    [
      ...["bank", "--id", bank, "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0"],
      ...["--gateway", gatewayAddresses.join(",")],
      // Only with several: a lone bank keeps its exclusive lock, and the ledger that decides in memory.
      ...(several ? ["--multi-instance"] : []),
      ...storeArgs(store),
    ],
    options.env,
    profilerArgs(options, several ? `bank-${bank}-${instance + 1}` : `bank-${bank}`),
  );
}

export async function startOwnNetwork(options: OwnNetworkOptions): Promise<BenchNetwork> {
  const dataDir = await prepareDataDir(options);
  const scratch =
    options.store.kind === "postgres" ? await createScratchDatabase(options.store.url, "paynet_bench") : null;
  const store: StoreChoice =
    scratch === null || options.store.kind !== "postgres" ? options.store : { ...options.store, url: scratch.url };
  const children: Child[] = [];
  const exits: ChildExit[] = [];
  let closing = false;
  const watch = (child: Child) => {
    children.push(child);
    void child.exited.then(() => {
      if (!closing)
        exits.push({
          name: child.name,
          code: child.exit?.code ?? null,
          signal: child.exit?.signal ?? null,
          lastLines: child.lastLines.slice(-exitLinesShown),
        });
    });
    return child;
  };
  const close = async () => {
    closing = true;
    await stopChildren(children);
    if (!options.keep) await rm(dataDir, { recursive: true, force: true });
    if (!options.keep) await scratch?.drop();
  };
  try {
    // Gateways one after another: each migrates the schema under its advisory lock anyway, and a start is short.
    const gatewayAddresses: string[] = [];
    for (let index = 0; index < options.gateways; index += 1) {
      const name = options.gateways === 1 ? "gateway" : `gateway ${index + 1}`;
      const gateway = watch(
        new Child(
          name,
          ["gateway", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", ...storeArgs(store)],
          options.env,
          profilerArgs(options, name.replace(" ", "-")),
        ),
      );
      const [, address] = await gateway.waitFor(listeningPattern);
      gatewayAddresses.push(address!);
    }
    await Promise.all(
      options.banks.flatMap((bank) =>
        Array.from({ length: options.bankInstances }, async (_, instance) => {
          const child = watch(startBank(options, dataDir, store, gatewayAddresses, bank, instance));
          await child.waitFor(registeredPattern, gatewayAddresses.length);
        }),
      ),
    );
    const processes = () =>
      children.flatMap((child) =>
        child.process.pid === undefined ? [] : [{ name: child.name, pid: child.process.pid }],
      );
    return {
      dataDir,
      gatewayAddresses,
      owned: true,
      store,
      unexpectedExits: () => [...exits],
      processes,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** An existing network: nothing to start or stop. */
export function existingNetwork(dataDir: string, gatewayAddress: string, store: StoreChoice): BenchNetwork {
  return {
    dataDir,
    gatewayAddresses: [gatewayAddress],
    owned: false,
    store,
    unexpectedExits: () => [],
    processes: () => [],
    close: async () => undefined,
  };
}
