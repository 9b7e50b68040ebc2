// The network `paynet verify` runs: one gateway and K bank processes (spawned from this CLI), the TCP proxies
// its partitions cut, and a supervisor that starts, kills, pauses and restarts each process on command and
// restarts one that died on its own (at an armed crash point, or a real crash, which is recorded).
import { openDatabase, terminateSessions, type Database } from "../../core/durable/postgres/database.js";
import { storeArgs, type StoreChoice } from "../store-option.js";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { Mutex } from "./mutex.js";
import { TcpProxy } from "./tcp-proxy.js";
import { cliEntryPath } from "../../package-paths.js";

export const clusterBounds = Object.freeze({
  readyTimeoutMs: 30_000,
  startAttemptsMax: 3,
  stopGraceMs: 5_000,
  /** Lines kept per process, for the report of a process that died. */
  linesKept: 20,
  /** The gateway's --records-retained: small, so that every run archives. */
  gatewayRecordsRetained: 16,
});

export interface ProcessEvent {
  process: string;
  kind: "crash-point-reached" | "unplanned-exit" | "start-failed";
  detail: string;
  atMs: number;
}

/** A log line as text: a JSON log record becomes "[role] message"; any other line stays as it is. */
export function lineText(line: string): string {
  if (!line.startsWith("{")) return line;
  try {
    const record = JSON.parse(line) as { msg?: unknown; role?: unknown };
    if (typeof record.msg === "string" && typeof record.role === "string") return `[${record.role}] ${record.msg}`;
  } catch {
    // not JSON after all
  }
  return line;
}

interface Incarnation {
  child: ChildProcess;
  closed: Promise<void>;
  lines: string[];
  waiters: Array<{ pattern: RegExp; resolve: (match: RegExpExecArray) => void }>;
  expectedExit: boolean;
  crashSpec: string | null;
  crashReached: boolean;
}

export interface ProcessSpec {
  name: string;
  /** Evaluated at each start, so a restart can reuse what the first start learned (the gateway's port). */
  args: () => string[];
  env: Readonly<Record<string, string>>;
  readyPattern: RegExp;
}

/** One supervised process. Operations that change its state run one at a time through `mutex`. */
export class ManagedProcess {
  readonly name: string;
  readonly mutex = new Mutex();
  readonly #spec: ProcessSpec;
  readonly #onEvent: (event: ProcessEvent) => void;
  readonly #onDiedAlone: (process: ManagedProcess) => void;
  #current: Incarnation | null = null;
  #paused = false;
  #recent: string[] = [];

  constructor(
    spec: ProcessSpec,
    onEvent: (event: ProcessEvent) => void,
    onDiedAlone: (process: ManagedProcess) => void,
  ) {
    this.name = spec.name;
    this.#spec = spec;
    this.#onEvent = onEvent;
    this.#onDiedAlone = onDiedAlone;
  }

  get running(): boolean {
    const child = this.#current?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Whether the latest incarnation died at its armed crash point. */
  get crashReached(): boolean {
    return this.#current?.crashReached === true;
  }

  /** The crash point the running incarnation was started with, if any. */
  get armed(): string | null {
    return this.running ? (this.#current?.crashSpec ?? null) : null;
  }

  get pid(): number | undefined {
    return this.running ? this.#current?.child.pid : undefined;
  }

  /**
   * Starts a new incarnation (optionally armed with PAYNET_CRASH_AT) and waits for its readiness line. A start
   * that fails is retried unarmed: an armed process may reach its crash point while recovering at start.
   */
  async start(crashSpec: string | null = null): Promise<RegExpExecArray> {
    let lastError: Error | null = null;
    for (let attempt = 1; attempt <= clusterBounds.startAttemptsMax; attempt += 1) {
      const incarnation = this.#spawn(attempt === 1 ? crashSpec : null);
      try {
        return await this.#waitForLine(incarnation, this.#spec.readyPattern, clusterBounds.readyTimeoutMs);
      } catch (error) {
        lastError = error as Error;
        incarnation.expectedExit = true;
        incarnation.child.kill("SIGKILL");
        await incarnation.closed;
      }
    }
    const detail = `${this.name} did not start after ${clusterBounds.startAttemptsMax} attempts: ${lastError?.message ?? "unknown"}`;
    this.#onEvent({ process: this.name, kind: "start-failed", detail, atMs: Date.now() });
    throw new Error(detail);
  }

  /** The first line of the running incarnation (seen or to come) that matches. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    if (this.#current === null) return Promise.reject(new Error(`${this.name} is not running`));
    return this.#waitForLine(this.#current, pattern, timeoutMs);
  }

  /** Stops the running incarnation with `signal` (SIGTERM: SIGKILL after the grace period) and waits for it. */
  async kill(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    const incarnation = this.#current;
    if (incarnation === null || !this.running) return;
    incarnation.expectedExit = true;
    if (this.#paused) this.resume();
    incarnation.child.kill(signal);
    const timer = setTimeout(() => incarnation.child.kill("SIGKILL"), clusterBounds.stopGraceMs);
    await incarnation.closed;
    clearTimeout(timer);
  }

  pause(): void {
    if (!this.running || this.#paused) return;
    this.#current!.child.kill("SIGSTOP");
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.running) this.#current!.child.kill("SIGCONT");
  }

  /** Resolves true when the running incarnation exits within `timeoutMs`, false otherwise. */
  async exitsWithin(timeoutMs: number): Promise<boolean> {
    const incarnation = this.#current;
    if (incarnation === null || !this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>(
      (resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs))),
    );
    const exited = await Promise.race([incarnation.closed.then(() => true), timedOut]);
    clearTimeout(timer);
    return exited;
  }

  /** The running incarnation is about to exit by a fault's doing: its exit is not a failure. */
  expectExit(): void {
    if (this.running) this.#current!.expectedExit = true;
  }

  /** Synchronous last resort on exit: no process of ours outlives verify. */
  killNow(): void {
    if (!this.running) return;
    this.#current!.expectedExit = true;
    this.#current!.child.kill("SIGKILL");
  }

  #spawn(crashSpec: string | null): Incarnation {
    // PAYNET_CRASH_AT is always set, so that one in verify's own environment never reaches a child.
    const env = { ...process.env, FORCE_COLOR: "0", ...this.#spec.env, PAYNET_CRASH_AT: crashSpec ?? "" };
    const child = spawn(process.execPath, [cliEntryPath, ...this.#spec.args()], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    const incarnation: Incarnation = {
      child,
      closed: Promise.resolve(),
      lines: [],
      waiters: [],
      expectedExit: false,
      crashSpec,
      crashReached: false,
    };
    for (const stream of [child.stdout, child.stderr])
      createInterface({ input: stream }).on("line", (line) => this.#onLine(incarnation, lineText(line)));
    incarnation.closed = new Promise((resolve) =>
      child.on("close", (code, signal) => (this.#onClose(incarnation, code, signal), resolve())),
    );
    this.#current = incarnation;
    this.#paused = false;
    return incarnation;
  }

  #onLine(incarnation: Incarnation, line: string): void {
    if (process.env.PAYNET_VERIFY_VERBOSE === "1") process.stderr.write(`  ${this.name}| ${line}\n`);
    if (incarnation.crashSpec !== null && line.includes(`crash point ${incarnation.crashSpec.split(":")[0]} reached`))
      incarnation.crashReached = true;
    incarnation.lines.push(line);
    if (incarnation.lines.length > 1_000) incarnation.lines.splice(0, 500);
    this.#recent.push(line);
    if (this.#recent.length > clusterBounds.linesKept) this.#recent.shift();
    incarnation.waiters = incarnation.waiters.filter((waiter) => {
      const match = waiter.pattern.exec(line);
      if (match !== null) waiter.resolve(match);
      return match === null;
    });
  }

  #onClose(incarnation: Incarnation, code: number | null, signal: NodeJS.Signals | null): void {
    if (incarnation.crashReached) {
      // An orderly stop may pass the point too: the gateway compacts its log on the way out.
      const detail = `${incarnation.crashSpec ?? ""}${incarnation.expectedExit ? " (during an orderly stop)" : ""}`;
      this.#onEvent({ process: this.name, kind: "crash-point-reached", detail, atMs: Date.now() });
    } else if (!incarnation.expectedExit) {
      const last = this.#recent.slice(-3).join(" | ");
      this.#onEvent({
        process: this.name,
        kind: "unplanned-exit",
        detail: `${this.name} exited on its own (code ${code}, signal ${signal}); last lines: ${last}`,
        atMs: Date.now(),
      });
    }
    if (!incarnation.expectedExit && this.#current === incarnation) this.#onDiedAlone(this);
  }

  #waitForLine(incarnation: Incarnation, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    for (const line of incarnation.lines) {
      const match = pattern.exec(line);
      if (match !== null) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no line matching ${pattern.source} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      incarnation.waiters.push({ pattern, resolve: (match) => (clearTimeout(timer), resolve(match)) });
      void incarnation.closed.then(() => {
        clearTimeout(timer);
        reject(
          new Error(
            `exited before a line matching ${pattern.source}; last lines: ${incarnation.lines.slice(-3).join(" | ")}`,
          ),
        );
      });
    });
  }
}

/** A gateway that stopped with unfinished payments in its name, and how long until another had them all. */
export interface TakeoverSeen {
  gateway: string;
  gatewayId: string;
  atMs: number;
  /** Unfinished payments it owned when it stopped. */
  payments: number;
  /** From its stop until none was left in its name; null if that had not happened within the watch's limit. */
  takenOverMs: number | null;
}

/** The takeover watch's pace (set with the nemesis's bounds). */
export const nemesisTakeover = Object.freeze({ pollMs: 100, watchMaxMs: 60_000 });

export interface ClusterOptions {
  dataDir: string;
  banks: readonly string[];
  /** Extra environment of the gateway process (the deliberately broken build's flag). */
  gatewayEnv: Readonly<Record<string, string>>;
  holdTimeoutMs: number;
  /** Where every process keeps its state (the same store for all). */
  store: StoreChoice;
  /** How many gateways (more than one only on PostgreSQL). */
  gateways: number;
}

/** "gateway" when there is one; "gateway-1", "gateway-2", … when there are several. */
export function gatewayName(index: number, gateways: number): string {
  return gateways === 1 ? "gateway" : `gateway-${index + 1}`;
}

/**
 * The gateways, the banks, and the proxies a partition cuts: one in front of each gateway for the clients, one
 * per bank and gateway for the bank's link to that gateway, and (on PostgreSQL) one per gateway in front of the
 * database server.
 */
export class Cluster {
  readonly gateways: ManagedProcess[] = [];
  readonly banks = new Map<string, ManagedProcess>();
  readonly events: ProcessEvent[] = [];
  readonly proxyMutexes = new Map<string, Mutex>();
  /** Faults on gateways run one at a time (with several, at least one is always left alive and connected). */
  readonly gatewayFaults = new Mutex();
  readonly clientProxies: TcpProxy[] = [];
  /** Each bank's proxies to the gateways, in gateway order. */
  readonly bankProxies = new Map<string, TcpProxy[]>();
  /** Each gateway's proxy to the database server (PostgreSQL only). */
  readonly storeProxies: TcpProxy[] = [];
  readonly #gatewayPorts: number[] = [];
  /** The id each gateway's latest start was given (`--gateway-id`, PostgreSQL only): a new one per start. */
  readonly #gatewayIds: string[] = [];
  #gatewayStarts = 0;
  /** Verify's own pool on the database (not through a proxy), for the takeover watches. */
  #database: Database | null = null;
  /** Every takeover watched, in order. */
  readonly takeovers: TakeoverSeen[] = [];
  #stopping = false;
  #stopped = false;
  readonly #options: ClusterOptions;

  constructor(options: ClusterOptions) {
    this.#options = options;
    const onEvent = (event: ProcessEvent) => this.events.push(event);
    const onDiedAlone = (managed: ManagedProcess) => void this.#restartAfterDeath(managed);
    for (let index = 0; index < options.gateways; index += 1) {
      this.#gatewayPorts.push(0);
      this.#gatewayIds.push("");
      this.gateways.push(
        new ManagedProcess(
          {
            name: gatewayName(index, options.gateways),
            // Few finished payments retained: a run archives and compacts, under faults.
            args: () => [
              "gateway",
              "--data-dir",
              options.dataDir,
              "--host",
              "127.0.0.1",
              "--port",
              String(this.#gatewayPorts[index]),
              "--records-retained",
              String(clusterBounds.gatewayRecordsRetained),
              ...this.#gatewayStoreArgs(index),
            ],
            env: options.gatewayEnv,
            readyPattern: /\[gateway\] listening on (\S+)/,
          },
          onEvent,
          onDiedAlone,
        ),
      );
    }
    for (const bank of options.banks) {
      const spec: ProcessSpec = {
        name: `bank ${bank}`,
        args: () => [
          "bank",
          "--id",
          bank,
          "--data-dir",
          options.dataDir,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--gateway",
          this.bankProxies
            .get(bank)!
            .map((proxy) => proxy.address)
            .join(","),
          "--hold-timeout-ms",
          String(options.holdTimeoutMs),
          ...storeArgs(options.store),
        ],
        env: {},
        readyPattern: new RegExp(`\\[bank ${bank}\\] listening on (\\S+)`),
      };
      this.banks.set(bank, new ManagedProcess(spec, onEvent, onDiedAlone));
    }
  }

  /** The first gateway (the only one unless --gateways). */
  get gateway(): ManagedProcess {
    return this.gateways[0]!;
  }

  /** The clients' proxy to the first gateway. */
  get clientProxy(): TcpProxy | null {
    return this.clientProxies[0] ?? null;
  }

  /** The gateway of a fault's target name ("gateway", "gateway-2", …), or undefined. */
  gatewayNamed(name: string): ManagedProcess | undefined {
    return this.gateways.find((managed) => managed.name === name);
  }

  /** The id the gateway at `index` was last started with ("" on the files, where gateways have none). */
  gatewayIdOf(index: number): string {
    return this.#gatewayIds[index] ?? "";
  }

  /** A gateway's store: on PostgreSQL through its own proxy (a partition cuts it), with a new id per start. */
  #gatewayStoreArgs(index: number): string[] {
    const store = this.#options.store;
    if (store.kind !== "postgres") return storeArgs(store);
    this.#gatewayStarts += 1;
    const gatewayId = `verify-g${index + 1}-${this.#gatewayStarts}`;
    this.#gatewayIds[index] = gatewayId;
    const proxy = this.storeProxies[index];
    const url = new URL(store.url);
    if (proxy !== undefined) url.port = proxy.address.split(":").at(-1)!;
    return [...storeArgs({ ...store, url: url.toString() }), "--gateway-id", gatewayId];
  }

  /** The processes keep their state in PostgreSQL (leases and session cuts apply). */
  get usesDatabase(): boolean {
    return this.#options.store.kind === "postgres";
  }

  /** Terminates the database sessions of a gateway (`target` its name) or of a bank; how many. */
  async cutStoreSessions(target: string): Promise<number> {
    const store = this.#options.store;
    if (store.kind !== "postgres") return 0;
    const database = decodeURIComponent(new URL(store.url).pathname.slice(1));
    const gateway = this.gatewayNamed(target);
    // A gateway's sessions carry its id after the name (`paynet-gateway verify-g1-3`); a bank's are the name alone.
    const applicationName =
      gateway === undefined ? `paynet-bank-${target}` : `paynet-gateway ${this.gatewayIdOfProcess(gateway)}`;
    return terminateSessions(store.url, database, applicationName, { match: "exact" });
  }

  /** The id of a gateway process's latest start ("" for a bank, or on the files). */
  gatewayIdOfProcess(managed: ManagedProcess): string {
    const index = this.gateways.indexOf(managed);
    return index < 0 ? "" : this.gatewayIdOf(index);
  }

  /**
   * Watches the takeover of a gateway that stopped at `sinceMs` (killed, or cut off from the database): how
   * many unfinished payments it owned, and how long until none was left in its name (claimed by another
   * gateway, or by its own next start with a new id). Recorded in `takeovers`; null on the files.
   */
  async watchTakeover(gateway: string, gatewayId: string, sinceMs: number): Promise<TakeoverSeen | null> {
    const database = this.#watchDatabase();
    if (database === null || gatewayId === "") return null;
    const owned = async () =>
      (
        await database.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM paynet_gateway.payments WHERE owner = $1 AND NOT finished",
          [gatewayId],
        )
      ).rows[0]!.n;
    const payments = await owned();
    let takenOverMs: number | null = payments === 0 ? 0 : null;
    while (takenOverMs === null && Date.now() - sinceMs < nemesisTakeover.watchMaxMs) {
      await new Promise((resolve) => setTimeout(resolve, nemesisTakeover.pollMs));
      if ((await owned()) === 0) takenOverMs = Date.now() - sinceMs;
    }
    const seen: TakeoverSeen = { gateway, gatewayId, atMs: sinceMs, payments, takenOverMs };
    if (payments > 0) this.takeovers.push(seen);
    return seen;
  }

  #watchDatabase(): Database | null {
    const store = this.#options.store;
    if (store.kind !== "postgres") return null;
    this.#database ??= openDatabase({ url: store.url, applicationName: "paynet-verify" });
    return this.#database;
  }

  all(): ManagedProcess[] {
    return [...this.gateways, ...this.banks.values()];
  }

  /** Every proxy a partition may cut. */
  proxies(): TcpProxy[] {
    return [...this.clientProxies, ...[...this.bankProxies.values()].flat(), ...this.storeProxies];
  }

  /**
   * Starts the gateways (each behind its proxies), then every bank, and waits until each bank registered with
   * every gateway. Returns the gateways' own addresses and the addresses clients dial (their proxies).
   */
  async start(): Promise<{ gatewayAddresses: string[]; clientAddresses: string[] }> {
    const store = this.#options.store;
    if (store.kind === "postgres") {
      const url = new URL(store.url);
      for (let index = 0; index < this.gateways.length; index += 1)
        this.storeProxies.push(await TcpProxy.start(`${url.hostname}:${url.port === "" ? "5432" : url.port}`));
    }
    const gatewayAddresses: string[] = [];
    for (const [index, gateway] of this.gateways.entries()) {
      const [, address] = await gateway.start();
      gatewayAddresses.push(address!);
      this.#gatewayPorts[index] = Number(address!.split(":").at(-1));
      this.clientProxies.push(await TcpProxy.start(address!));
    }
    this.proxyMutexes.set("clients", new Mutex());
    for (const bank of this.#options.banks) {
      const proxies: TcpProxy[] = [];
      for (const address of gatewayAddresses) proxies.push(await TcpProxy.start(address));
      this.bankProxies.set(bank, proxies);
      this.proxyMutexes.set(bank, new Mutex());
    }
    await Promise.all(
      [...this.banks.entries()].map(async ([bank, managed]) => {
        await managed.start();
        // One link per gateway (the bank's --gateway list is its proxies to them): each registers on its own.
        for (const proxy of this.bankProxies.get(bank)!)
          await managed.waitForLine(
            new RegExp(`\\[bank ${bank}\\] registered with the gateway at ${proxy.address.replace(/\./g, "\\.")}`),
            clusterBounds.readyTimeoutMs,
          );
      }),
    );
    return { gatewayAddresses, clientAddresses: this.clientProxies.map((proxy) => proxy.address) };
  }

  /** Ends every fault: resumes paused processes, heals the proxies, restarts dead or armed processes unarmed. */
  async healAll(): Promise<void> {
    for (const proxy of this.proxies()) proxy.heal();
    await Promise.all(
      this.all().map((managed) =>
        managed.mutex.run(async () => {
          managed.resume();
          if (managed.armed !== null) await managed.kill("SIGTERM");
          if (!managed.running) await managed.start().catch(() => undefined);
        }),
      ),
    );
  }

  /** Orderly stop of every process (SIGKILL after the grace period) and of the proxies. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopping = true;
    await Promise.all(this.all().map((managed) => managed.kill("SIGTERM")));
    await Promise.all(this.proxies().map((proxy) => proxy.close()));
    await this.#database?.end().catch(() => undefined);
  }

  killNow(): void {
    this.#stopping = true;
    for (const managed of this.all()) managed.killNow();
  }

  async #restartAfterDeath(managed: ManagedProcess): Promise<void> {
    await managed.mutex.run(async () => {
      if (this.#stopping || managed.running) return;
      await managed.start().catch(() => undefined);
    });
  }
}
