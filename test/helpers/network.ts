// Test harness: real gateway and bank processes over real sockets, in a temporary data dir.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { cp, mkdtemp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, afterEach } from "node:test";
import {
  issueCertificates,
  clientFiles,
  loadIdentity,
  bankFiles,
  gatewayFiles,
  operatorFiles,
  type CertificateFiles,
} from "../../src/core/transport/certificates.js";
import { readNetworkState } from "../../src/core/bank/store/file/bank-state.js";
import { readGatewayRecords, type PaymentRecord } from "../../src/core/gateway/store/file/gateway-log.js";
import type { PaymentError } from "../../src/core/domain/errors.js";
import { dataPaths, type DataPaths } from "../../src/core/durable/paths.js";
import { createClient } from "../../src/core/transport/rpc.js";
import { clientCredentials, expectServerName } from "../../src/core/transport/tls.js";
import { bankServerName, gatewayServerName } from "../../src/core/transport/identity.js";
import { Bank, PaymentGateway } from "../../src/gen/paynet/v1/paynet_pb.js";
import { cliEntryPath } from "../../src/package-paths.js";

/** The CLI every test process runs: the bundle that `npm run build` writes. */
export const cliPath = cliEntryPath;
const readyTimeoutMs = 60_000;

export const defaultAccountsCsv = `username,balance,password,bank
alice,1000,alice123,SBI
bob,500,bob123,HDFC
carol,750,carol123,SBI
dave,250.50,dave123,HDFC
`;

export const passwords: Record<string, string> = {
  alice: "alice123",
  bob: "bob123",
  carol: "carol123",
  dave: "dave123",
};

let certificateTemplate: Promise<string> | null = null;

/** Certificates are made once per test process (RSA keys take a while) and copied into each network. */
function templateCertificates(): Promise<string> {
  certificateTemplate ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-certs-"));
    await issueCertificates({ certificateDir: dir, banks: ["SBI", "HDFC", "ICICI"] });
    // Only synchronous work runs in an exit handler: an async rm here never ran, and left one directory per test process.
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  })();
  return certificateTemplate;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | null;
}

/** A running paynet process whose output lines can be awaited. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<{ pattern: RegExp; resolve: (match: RegExpExecArray) => void; from: number }> = [];

  constructor(name: string, args: string[], env: Record<string, string> = {}) {
    this.name = name;
    this.child = spawn(process.execPath, [cliPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0", ...env },
    });
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        this.lines.push(line);
        if (process.env.PAYNET_TEST_VERBOSE) process.stderr.write(`  ${name}| ${line}\n`);
        this.#waiters = this.#waiters.filter((waiter) => {
          const match = waiter.pattern.exec(line);
          if (match === null) return true;
          waiter.resolve(match);
          return false;
        });
      });
    }
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  /** The first output line (already seen or yet to come) matching `pattern`. */
  waitFor(pattern: RegExp, what = pattern.source): Promise<RegExpExecArray> {
    for (const line of this.lines) {
      const match = pattern.exec(line);
      if (match !== null) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: no line matching ${what} within ${readyTimeoutMs} ms; output:\n${this.lines.join("\n")}`,
            ),
          ),
        readyTimeoutMs,
      );
      this.#waiters.push({
        pattern,
        resolve: (match) => (clearTimeout(timer), resolve(match)),
        from: this.lines.length,
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(
          new Error(
            `${this.name} exited (code ${code}, signal ${signal}) before a line matching ${what}; output:\n${this.lines.join("\n")}`,
          ),
        );
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.running) this.child.kill(signal);
    await this.exited;
  }
}

export function runCli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0", ...options.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.stdin.end(options.stdin ?? "");
    child.on("exit", (code) => {
      let json: Record<string, unknown> | null;
      try {
        json = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Record<string, unknown>;
      } catch {
        json = null;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** Polls `predicate` until it holds; for waiting on state another process reaches (recovery, phase 2). */
export async function waitUntil(
  predicate: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface StartOptions {
  env?: Record<string, string>;
  args?: string[];
}

export class Network {
  readonly dir: string;
  readonly paths: DataPaths;
  gateway: Proc | null = null;
  gatewayAddress = "";
  readonly banks = new Map<string, Proc>();
  readonly #procs: Proc[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.paths = dataPaths(dir);
  }

  static async create(options: { accountsCsv?: string } = {}): Promise<Network> {
    const dir = await mkdtemp(join(tmpdir(), "paynet-test-"));
    const network = new Network(dir);
    await mkdir(join(dir, "server"), { recursive: true });
    await writeFile(network.paths.accountsCsv, options.accountsCsv ?? defaultAccountsCsv);
    await cp(await templateCertificates(), network.paths.certificateDir, { recursive: true });
    return network;
  }

  async startGateway(options: StartOptions = {}): Promise<Proc> {
    const port = this.gatewayAddress === "" ? "0" : this.gatewayAddress.split(":")[1]!;
    const proc = new Proc(
      "gateway",
      ["gateway", "--data-dir", this.dir, "--port", port, ...(options.args ?? [])],
      options.env,
    );
    this.#procs.push(proc);
    this.gateway = proc;
    const [, address] = await proc.waitFor(/listening on ([0-9.:]+)/);
    this.gatewayAddress = address!;
    return proc;
  }

  /** Starts a bank and waits until the gateway has registered it. */
  async startBank(bank: string, options: StartOptions = {}): Promise<Proc> {
    const proc = this.spawnBank(bank, options);
    await proc.waitFor(/registered with the gateway/);
    return proc;
  }

  spawnBank(bank: string, options: StartOptions = {}): Proc {
    const proc = new Proc(
      `bank ${bank}`,
      [
        "bank",
        "--id",
        bank,
        "--data-dir",
        this.dir,
        "--port",
        "0",
        "--gateway",
        this.gatewayAddress,
        ...(options.args ?? []),
      ],
      options.env,
    );
    this.#procs.push(proc);
    this.banks.set(bank, proc);
    return proc;
  }

  async start(banks: string[] = ["SBI", "HDFC"]): Promise<void> {
    await this.startGateway();
    await Promise.all(banks.map((bank) => this.startBank(bank)));
  }

  /** Resolves once every running bank has registered with the current gateway process. */
  async gatewayReady(): Promise<void> {
    const gateway = this.gateway!;
    await Promise.all(
      [...this.banks.entries()]
        .filter(([, proc]) => proc.running)
        .map(([bank]) => gateway.waitFor(new RegExp(`bank ${bank} registered at`))),
    );
  }

  client(args: string[], password: string | undefined, options: { stdin?: string } = {}): Promise<RunResult> {
    const env: Record<string, string> = password === undefined ? {} : { PAYNET_PASSWORD: password };
    return runCli(["client", ...args, "--data-dir", this.dir, "--gateway", this.gatewayAddress], { env, ...options });
  }

  pay(
    from: string,
    fromBank: string,
    to: string,
    toBank: string,
    amount: string,
    extra: string[] = [],
  ): Promise<RunResult> {
    return this.client(
      [
        "pay",
        "--user",
        from,
        "--bank",
        fromBank,
        "--to",
        to,
        "--to-bank",
        toBank,
        "--amount",
        amount,
        "--json",
        ...extra,
      ],
      passwords[from],
    );
  }

  /**
   * Durable balances by `user@BANK`, in minor units: what a bank restarted now would hold (its CSV rows and
   * pending section as of its last checkpoint, with its journal replayed over them).
   */
  async balancesOnDisk(): Promise<Map<string, bigint>> {
    return (await readNetworkState(this.paths)).balancesMinor;
  }

  async totalOnDisk(): Promise<bigint> {
    let total = 0n;
    for (const value of (await this.balancesOnDisk()).values()) total += value;
    return total;
  }

  /**
   * Waits until the work that follows a reply is done: the gateway has recorded every payment finished, and
   * every bank has folded its journal into the shared files (a checkpoint runs shortly after a payment is
   * decided). From then on the state files stay as they are until the next request.
   */
  async settled(): Promise<void> {
    const serverDir = dirname(this.paths.pendingJson);
    await waitUntil(async () => {
      for (const record of (await readGatewayRecords(this.paths)).values()) if (!record.finished) return false;
      return (await readdir(serverDir)).every((name) => !/^journal_.*\.jsonl$/.test(name));
    }, "the gateway's finished records and every bank's checkpoint");
  }

  /** Prepared holds of every bank, as a restarted bank would find them. */
  async holdsOnDisk(): Promise<number> {
    let holds = 0;
    for (const state of (await readNetworkState(this.paths)).banks.values()) holds += state.holds.size;
    return holds;
  }

  async gatewayRecord(paymentId: string): Promise<PaymentRecord | undefined> {
    return (await readGatewayRecords(this.paths)).get(paymentId);
  }

  async identity(files: (dir: string) => CertificateFiles) {
    return loadIdentity(this.paths.certificateDir, files(this.paths.certificateDir));
  }

  /** A raw gateway client with the given identity (the client's by default). */
  async gatewayClient(files: (dir: string) => CertificateFiles = clientFiles) {
    return createClient(
      PaymentGateway,
      this.gatewayAddress,
      clientCredentials(await this.identity(files)),
      expectServerName(gatewayServerName),
      "GATEWAY_UNAVAILABLE",
    );
  }

  /**
   * Logs in and makes one payment over a fresh raw connection, as a client would.
   * Resolves null when committed, or with the PaymentError it was refused (or failed) with.
   */
  async rawPay(payment: {
    from: string;
    fromBank: string;
    to: string;
    toBank: string;
    amountMinor: bigint;
    paymentId: string;
  }): Promise<PaymentError | null> {
    const gateway = await this.gatewayClient();
    const call = { timeoutMs: 30_000 };
    try {
      const { token } = await gateway.registerClient(
        { username: payment.from, password: passwords[payment.from]!, bank: payment.fromBank },
        call,
      );
      await gateway.makePayment(
        {
          token,
          paymentId: payment.paymentId,
          toUser: payment.to,
          toBank: payment.toBank,
          amountMinor: payment.amountMinor,
        },
        call,
      );
      return null;
    } catch (error) {
      return error as PaymentError;
    } finally {
      gateway.close();
    }
  }

  /** A raw client to a bank, dialed with the given identity. */
  async bankClient(bank: string, address: string, files: (dir: string) => CertificateFiles) {
    return createClient(
      Bank,
      address,
      clientCredentials(await this.identity(files)),
      expectServerName(bankServerName(bank)),
    );
  }

  /** SIGKILL by default (a crash); SIGTERM for an orderly stop that releases the file locks. */
  async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await Promise.all(this.#procs.map((proc) => proc.stop(signal)));
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * For a suite whose tests each build their own network: call at the suite's top level, then `create()` in a
 * test. The network is destroyed after that test, whatever its outcome; `beforeDestroy` runs first (to
 * resume a process a test paused, for one).
 */
export function networkPerTest(options: { beforeDestroy?: (network: Network) => Promise<void> } = {}): {
  create: (createOptions?: { accountsCsv?: string }) => Promise<Network>;
} {
  let current: Network | null = null;
  afterEach(async () => {
    const network = current;
    current = null;
    if (network === null) return;
    await options.beforeDestroy?.(network);
    await network.destroy();
  });
  return { create: async (createOptions) => (current = await Network.create(createOptions)) };
}

/**
 * For tests that share one network (a process start is most of a short process test's time): call at a
 * suite's top level (or the file's), then run each test's body with `use`, one test at a time. The first test
 * makes the network; a test that fails destroys it, so that what it left (a process still armed, a payment
 * unfinished) cannot fail a later test, which gets a fresh one. The last is destroyed after the suite.
 */
export function networkPerSuite(): { use: (test: (network: Network) => Promise<void>) => Promise<void> } {
  let current: Network | null = null;
  after(async () => {
    await current?.destroy();
    current = null;
  });
  return {
    use: async (test) => {
      const network = (current ??= await Network.create());
      try {
        await test(network);
      } catch (error) {
        current = null;
        await network.destroy();
        throw error;
      }
    },
  };
}

export { clientFiles, bankFiles, gatewayFiles, operatorFiles };
