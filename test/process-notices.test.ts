// What processes say about themselves: which bank an --id means, waiting for the gateway, how they stopped,
// and the questions they ask on a terminal (a real one, tmux) instead of refusing. Items 8, 10 and 12 of issue 22.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { Network, Proc, passwords, runCli } from "./helpers/network.js";
import { Terminal } from "./helpers/terminal.js";
import { createThrowawayDatabase, latePostgres } from "./helpers/postgres.js";
import { WaitingNotice } from "../src/roles/process.js";
import { matchBankName, ordinal } from "../src/roles/bank-choice.js";

/** An address nothing listens on: connecting is refused at once. */
const nobodyAt = "127.0.0.1:1";

describe("WaitingNotice", () => {
  it("says a wait once when it begins, then again every interval while it lasts, and anew after an answer", () => {
    let nowMs = 0;
    const said: string[] = [];
    const notice = new WaitingNotice("the gateway at H:1", (message) => said.push(`${nowMs} ${message}`), {
      everyMs: 30_000,
      nowMs: () => nowMs,
    });
    for (nowMs = 0; nowMs <= 65_000; nowMs += 2_000) notice.stillWaiting();
    notice.done();
    nowMs = 70_000;
    notice.stillWaiting();
    assert.deepEqual(said, [
      "0 waiting for the gateway at H:1",
      "30000 waiting for the gateway at H:1 (for 30 s)",
      "60000 waiting for the gateway at H:1 (for 60 s)",
      "70000 waiting for the gateway at H:1",
    ]);
  });
});

describe("bank names", () => {
  const banks = ["SBI", "HDFC", "Axis", "AXIS"];
  const cases: Array<[string, ReturnType<typeof matchBankName>]> = [
    ["SBI", { kind: "exact", bank: "SBI" }],
    ["sbi", { kind: "folded", bank: "SBI" }],
    ["hDfC", { kind: "folded", bank: "HDFC" }],
    ["Axis", { kind: "exact", bank: "Axis" }],
    ["axis", { kind: "ambiguous", matches: ["Axis", "AXIS"] }],
    ["ICICI", { kind: "none" }],
  ];
  for (const [name, expected] of cases)
    it(`${name} among ${banks.join(", ")} is ${expected.kind}`, () =>
      assert.deepEqual(matchBankName(name, banks), expected));
  it("says positions in words up to ten, then with a suffix", () =>
    assert.deepEqual([1, 2, 3, 10, 11, 12, 13, 21, 22, 23, 101, 111].map(ordinal), [
      "first",
      "second",
      "third",
      "tenth",
      "11th",
      "12th",
      "13th",
      "21st",
      "22nd",
      "23rd",
      "101st",
      "111th",
    ]));
});

describe("a client with several gateways", () => {
  let network: Network;
  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
  });
  after(() => network.destroy());

  it("skips one that takes the connection but never completes the handshake, says so, and pays through the next", async () => {
    // A hung gateway (stopped, swamped): its kernel accepts the connection, nothing ever answers.
    const hung: Server = createServer(() => {});
    await new Promise<void>((resolve) => hung.listen(0, "127.0.0.1", resolve));
    const hungAt = `127.0.0.1:${(hung.address() as { port: number }).port}`;
    try {
      const result = await runCli(
        [
          ...["client", "pay", "--user", "alice", "--bank", "SBI", "--to", "bob", "--to-bank", "HDFC"],
          ...["--amount", "1.00", "--data-dir", network.dir, "--gateway", `${hungAt},${network.gatewayAddress}`],
        ],
        { env: { PAYNET_PASSWORD: passwords.alice! } },
      );
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /^committed 1\.00 from alice@SBI to bob@HDFC/);
      assert.equal(
        result.stderr,
        `the gateway at ${hungAt} did not connect within 3 s; trying the one at ${network.gatewayAddress}\n`,
      );
    } finally {
      hung.close();
    }
  });
});

describe("processes that say what they are doing", () => {
  let network: Network;
  before(async () => {
    network = await Network.create();
  });
  after(() => network.destroy());

  it("bank --id 1 says which bank that is, waits for the gateway saying so once, and logs stopped (SIGTERM)", async () => {
    const bank = new Proc("bank", [
      "bank",
      "--id",
      "1",
      "--data-dir",
      network.dir,
      "--port",
      "0",
      "--gateway",
      nobodyAt,
    ]);
    try {
      await bank.waitFor(/bank 1 is SBI, the first bank in .*server\/dummydata\.csv/);
      await bank.waitFor(new RegExp(`waiting for the gateway at ${nobodyAt}`));
      await bank.waitFor(/listening on/);
    } finally {
      await bank.stop("SIGTERM");
    }
    assert.equal(bank.child.exitCode, 0, bank.lines.join("\n"));
    assert.match(bank.lines.at(-1)!, /stopped \(SIGTERM\)/);
    // Its retries (every 100 ms doubling to 2 s) are not each said: only the first, until 30 s have passed.
    assert.equal(
      bank.lines.filter((line) => line.includes("waiting for the gateway")).length,
      1,
      bank.lines.join("\n"),
    );
  });

  it("a bank stopped while its first registration waits on a gateway that never answers stops in order", async () => {
    // The gateway's port takes connections and says nothing: the registration waits out its deadline (2 s).
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const silentAt = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    const bank = new Proc("bank", [
      "bank",
      "--id",
      "SBI",
      "--data-dir",
      network.dir,
      "--port",
      "0",
      "--gateway",
      silentAt,
    ]);
    try {
      await bank.waitFor(/listening on/);
    } finally {
      await bank.stop("SIGTERM");
      silent.close();
    }
    assert.deepEqual(await bank.exited, { code: 0, signal: null }, bank.lines.join("\n"));
    assert.match(bank.lines.at(-1)!, /stopped \(SIGTERM\)/);
  });

  it("bank --id with a number or name naming no bank, or no --id without a terminal, exits 2 listing the banks", async () => {
    for (const args of [["--id", "3"], ["--id", "ICICI"], []]) {
      const result = await runCli(["bank", ...args, "--data-dir", network.dir, "--port", "0", "--gateway", nobodyAt]);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, /1 SBI, 2 HDFC/, args.join(" "));
      assert.equal(result.stdout, "", args.join(" "));
    }
  });

  it("gateway logs stopped (SIGINT) and exits 0; a bank named in lower case is the bank", async () => {
    await network.startGateway();
    const bank = new Proc("bank", [
      "bank",
      "--id",
      "hdfc",
      "--data-dir",
      network.dir,
      "--port",
      "0",
      "--gateway",
      network.gatewayAddress,
    ]);
    await bank.waitFor(/--id hdfc is bank HDFC/);
    await bank.waitFor(/registered with the gateway/);
    await network.gateway!.stop("SIGINT");
    await bank.stop("SIGTERM");
    assert.equal(network.gateway!.child.exitCode, 0);
    assert.match(network.gateway!.lines.at(-1)!, /stopped \(SIGINT\)/);
  });

  it("a second gateway or bank on one data dir says at once which is already running there, with its pid", async () => {
    await network.startGateway();
    const bank = new Proc("bank", [
      ...["bank", "--id", "SBI", "--data-dir", network.dir, "--port", "0", "--gateway", network.gatewayAddress],
    ]);
    try {
      await bank.waitFor(/registered with the gateway/);
      const secondBank = await runCli([
        ...["bank", "--id", "sbi", "--data-dir", network.dir, "--port", "0", "--gateway", network.gatewayAddress],
      ]);
      assert.notEqual(secondBank.code, 0, secondBank.stdout + secondBank.stderr);
      assert.match(
        secondBank.stdout + secondBank.stderr,
        new RegExp(`bank SBI is already running here \\(pid ${bank.child.pid}\\)`),
      );
      const secondGateway = await runCli(["gateway", "--data-dir", network.dir, "--port", "0"]);
      assert.notEqual(secondGateway.code, 0, secondGateway.stdout + secondGateway.stderr);
      assert.match(
        secondGateway.stdout + secondGateway.stderr,
        new RegExp(`a gateway is already running here \\(pid ${network.gateway!.child.pid}\\)`),
      );
    } finally {
      await bank.stop("SIGTERM");
      await network.gateway!.stop("SIGTERM");
    }
  });

  it("a bank whose PostgreSQL server is not up yet says it waits for it, and opens its ledger once it answers", async () => {
    const throwaway = await createThrowawayDatabase("late_server");
    const server = await latePostgres(throwaway.url);
    const bank = new Proc("bank", [
      ...["bank", "--id", "SBI", "--data-dir", network.dir, "--port", "0", "--gateway", nobodyAt],
      ...["--store", server.url],
    ]);
    try {
      await bank.waitFor(/"error":"connect ECONNREFUSED [^"]*","msg":"waiting for the database at postgres:\/\//);
      server.comeUp();
      await bank.waitFor(/ledger open in PostgreSQL/);
      await bank.waitFor(new RegExp(`waiting for the gateway at ${nobodyAt}`));
    } finally {
      await bank.stop("SIGTERM");
      await server.close();
      await throwaway.drop();
    }
    assert.equal(bank.child.exitCode, 0, bank.lines.join("\n"));
  });

  it("client sync --watch says it is waiting for the gateway, once within the first 30 s, on standard error", async () => {
    const queued = await runCli([
      "client",
      "pay",
      ...["--user", "alice", "--bank", "SBI", "--to", "bob", "--to-bank", "HDFC", "--amount", "1.00", "--offline"],
      ...["--data-dir", network.dir, "--gateway", nobodyAt],
    ]);
    assert.equal(queued.code, 3, queued.stdout + queued.stderr);
    const sync = await runCli(
      [
        "client",
        "sync",
        ...["--user", "alice", "--bank", "SBI", "--watch", "--watch-timeout-ms", "3000", "--json"],
        ...["--data-dir", network.dir, "--gateway", nobodyAt],
      ],
      { env: { PAYNET_PASSWORD: passwords.alice! } },
    );
    assert.equal(sync.code, 3, sync.stdout + sync.stderr);
    assert.equal(sync.stderr, `waiting for the gateway at ${nobodyAt}\n`);
    assert.deepEqual(sync.json, { results: [], committed: 0, aborted: 0, remaining: 1 });
  });
});

describe("questions asked on a terminal", () => {
  let network: Network;
  let terminal: Terminal | null = null;
  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
  });
  after(async () => {
    await terminal?.close();
    await network.destroy();
  });

  it("a scripted client command asks for the password, hidden, when none is given; bank names in any case", async () => {
    terminal = await Terminal.start(
      "password",
      [
        ...["dist/paynet.js", "client", "pay", "--user", "alice", "--bank", "sbi", "--to", "bob", "--to-bank", "hdfc"],
        ...["--amount", "2.00", "--data-dir", network.dir, "--gateway", network.gatewayAddress],
      ],
      { unset: ["PAYNET_PASSWORD"] },
    );
    await terminal.waitFor(/Password for alice@SBI/);
    await terminal.keys("alice123", "Enter");
    const screen = await terminal.waitFor(/EXITED \d+/);
    assert.match(screen, /committed 2\.00 from alice@SBI to bob@HDFC; balance now 998\.00/);
    assert.match(screen, /EXITED 0/);
    assert.ok(!screen.includes("alice123"), `the password was shown:\n${screen}`);
    await terminal.close();
  });

  it("without a terminal the same command still exits 2 with the hint", async () => {
    const result = await network.client(["balance", "--user", "alice", "--bank", "SBI"], undefined);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stdout, /set PAYNET_PASSWORD or pass --password-stdin/);
  });

  it("paynet bank with no --id asks which bank, from the accounts file's list", async () => {
    terminal = await Terminal.start("bank", [
      ...["dist/paynet.js", "bank", "--data-dir", network.dir, "--port", "0", "--gateway", nobodyAt],
    ]);
    await terminal.waitFor(/Which bank is this\?[\s\S]*SBI[\s\S]*HDFC/);
    await terminal.keys("Down", "Enter");
    // HDFC already runs on this data dir (started above): the one chosen is the one refused, by name.
    const screen = await terminal.waitFor(/EXITED \d+/);
    assert.match(screen, /Which bank is this\? HDFC/);
    assert.match(screen, /bank HDFC is already running here \(pid \d+\)/);
    await terminal.close();
  });
});
