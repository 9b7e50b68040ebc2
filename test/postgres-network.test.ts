// The network on PostgreSQL (`--store postgres://…`), over real processes, sockets and a real server: a client
// uses it exactly as with files; a process killed and restarted loses nothing answered and applies nothing
// twice; a session terminated under a process stops it rather than letting it run ahead of the database; one
// process per role and bank; the durability check; `paynet db`; `paynet status` names the store.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import pg from "pg";
import { Network, Proc, runCli } from "./helpers/network.js";
import { createThrowawayDatabase, terminateSessions, type ThrowawayDatabase } from "./helpers/postgres.js";

/** Balances by `user@BANK` from the banks' tables, and the holds left. */
async function ledger(url: string): Promise<{ balancesMinor: Map<string, bigint>; holds: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const balancesMinor = new Map<string, bigint>();
    let holds = 0;
    for (const bank of ["SBI", "HDFC"]) {
      const schema = `paynet_bank_${bank.toLowerCase()}`;
      const rows = await client.query<{ username: string; balance_minor: string }>(
        `SELECT username, balance_minor FROM ${schema}.accounts`,
      );
      for (const row of rows.rows) balancesMinor.set(`${row.username}@${bank}`, BigInt(row.balance_minor));
      holds += (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.holds`)).rows[0]!.n;
    }
    return { balancesMinor, holds };
  } finally {
    await client.end();
  }
}

const total = (balances: Map<string, bigint>) => [...balances.values()].reduce((sum, value) => sum + value, 0n);

describe("the network on PostgreSQL", () => {
  let database: ThrowawayDatabase;
  let network: Network | null = null;
  const store = () => ["--store", database.url];

  before(async () => {
    database = await createThrowawayDatabase("network");
  });
  after(async () => {
    await database.drop();
  });
  afterEach(async () => {
    await network?.destroy();
    network = null;
    // Each test starts from empty schemas.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query("DROP SCHEMA IF EXISTS paynet_gateway, paynet_bank_sbi, paynet_bank_hdfc CASCADE");
    await client.end();
  });

  async function startNetwork(): Promise<Network> {
    network = await Network.create();
    await network.startGateway({ args: store() });
    await Promise.all(["SBI", "HDFC"].map((bank) => network!.startBank(bank, { args: store() })));
    return network;
  }

  it("serves a client as with files: pay, balance, repeat; state in the database, the seed's passwords hashed", async () => {
    const net = await startNetwork();
    const paid = await net.pay("alice", "SBI", "bob", "HDFC", "12.50", ["--id", "pg-first"]);
    assert.equal(paid.json?.status, "committed", paid.stderr);
    const again = await net.pay("alice", "SBI", "bob", "HDFC", "12.50", ["--id", "pg-first"]);
    assert.equal(again.json?.status, "committed", "a repeat answers as the first did");
    const refused = await net.pay("alice", "SBI", "bob", "HDFC", "5000");
    assert.equal(refused.json?.status, "aborted");
    assert.equal(refused.json?.reason, "INSUFFICIENT_FUNDS");
    const { balancesMinor, holds } = await ledger(database.url);
    assert.equal(balancesMinor.get("alice@SBI"), 98_750n, "applied once");
    assert.equal(balancesMinor.get("bob@HDFC"), 51_250n);
    assert.equal(holds, 0);
    const csv = await readFile(net.paths.accountsCsv, "utf8");
    assert.doesNotMatch(csv, /alice123|bob123/, "no plaintext password left in the seed file");
    assert.match(csv, /^alice,1000,scrypt\$/m, "the seed file keeps its balances: the ledger is the database");
  });

  it("loses nothing answered when the gateway and a bank are killed and restarted, and applies nothing twice", async () => {
    const net = await startNetwork();
    const before = total((await ledger(database.url)).balancesMinor);
    for (const id of ["k1", "k2", "k3"]) {
      const paid = await net.pay("alice", "SBI", "dave", "HDFC", "1.00", ["--id", id]);
      assert.equal(paid.json?.status, "committed", paid.stderr);
    }
    await net.gateway!.stop("SIGKILL");
    await net.banks.get("SBI")!.stop("SIGKILL");
    await net.startGateway({ args: store() });
    await net.startBank("SBI", { args: store() });
    await net.gatewayReady();
    for (const id of ["k1", "k2", "k3", "k4"]) {
      const paid = await net.pay("alice", "SBI", "dave", "HDFC", "1.00", ["--id", id]);
      assert.equal(paid.json?.status, "committed", `${id}: ${paid.stderr}`);
    }
    const { balancesMinor, holds } = await ledger(database.url);
    assert.equal(balancesMinor.get("alice@SBI"), 99_600n, "four payments of 1.00, each once");
    assert.equal(total(balancesMinor), before, "money is conserved");
    assert.equal(holds, 0);
    const record = await runCli(["payment", "k2", "--json", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
    assert.equal(record.code, 0, record.stderr);
    assert.match(record.stdout, /committed/);
  });

  it("a bank whose database sessions are terminated stops (exit 70), and a restarted one goes on with nothing lost", async () => {
    const net = await startNetwork();
    const paid = await net.pay("carol", "SBI", "bob", "HDFC", "2.00");
    assert.equal(paid.json?.status, "committed", paid.stderr);
    const sbi = net.banks.get("SBI")!;
    assert.ok((await terminateSessions(database.name, "paynet-bank-SBI")) >= 1, "the bank had sessions");
    const exit = await sbi.exited;
    assert.equal(exit.code, 70, sbi.lines.join("\n"));
    await net.startBank("SBI", { args: store() });
    await net.gatewayReady();
    const later = await net.pay("carol", "SBI", "bob", "HDFC", "3.00");
    assert.equal(later.json?.status, "committed", later.stderr);
    const { balancesMinor } = await ledger(database.url);
    assert.equal(balancesMinor.get("carol@SBI"), 74_500n);
  });

  it("runs one process per bank, naming the holder, and gateways side by side, each with its own lease", async () => {
    const net = await startNetwork();
    const second = new Proc("bank SBI (second)", [
      "bank",
      "--id",
      "SBI",
      "--data-dir",
      net.dir,
      "--port",
      "0",
      "--gateway",
      net.gatewayAddress,
      ...store(),
    ]);
    const exit = await second.exited;
    assert.notEqual(exit.code, 0);
    assert.match(second.lines.join("\n"), /paynet bank SBI: already held by paynet-bank-SBI/);
    const gateway = new Proc("gateway (second)", ["gateway", "--data-dir", net.dir, "--port", "0", ...store()]);
    try {
      await gateway.waitFor(/listening on/);
      const first = (await net.gateway!.waitFor(/gateway (gw-[A-Za-z0-9-]+) holds a lease of 5000 ms/))[1];
      const other = (await gateway.waitFor(/gateway (gw-[A-Za-z0-9-]+) holds a lease of 5000 ms/))[1];
      assert.notEqual(first, other, "each gateway process has an id of its own");
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      const live = await client.query<{ gateway_id: string; address: string }>(
        "SELECT gateway_id, address FROM paynet_gateway.gateways WHERE lease_expires_at > clock_timestamp() ORDER BY started_at",
      );
      await client.end();
      assert.deepEqual(
        live.rows.map((row) => row.gateway_id),
        [first, other],
      );
      assert.equal(live.rows[0]!.address, net.gatewayAddress);
    } finally {
      await gateway.stop("SIGTERM");
    }
    const refused = new Proc("gateway (same id)", [
      "gateway",
      "--data-dir",
      net.dir,
      "--port",
      "0",
      "--gateway-id",
      "fixed-id",
      ...store(),
    ]);
    await refused.waitFor(/listening on/);
    const twin = new Proc("gateway (same id, twice)", [
      "gateway",
      "--data-dir",
      net.dir,
      "--port",
      "0",
      "--gateway-id",
      "fixed-id",
      ...store(),
    ]);
    assert.notEqual((await twin.exited).code, 0);
    assert.match(twin.lines.join("\n"), /gateway id fixed-id is already taken/);
    await refused.stop("SIGTERM");
  });

  it("refuses a server session with synchronous_commit off unless told, and status names the store", async () => {
    network = await Network.create();
    const url = new URL(database.url);
    url.searchParams.set("options", "-c synchronous_commit=off");
    const refused = new Proc("gateway", [
      "gateway",
      "--data-dir",
      network.dir,
      "--port",
      "0",
      "--store",
      url.toString(),
    ]);
    assert.notEqual((await refused.exited).code, 0);
    assert.match(refused.lines.join("\n"), /synchronous_commit=off.*--unsafe-allow-async-commit/);
    await network.startGateway({ args: ["--store", url.toString(), "--unsafe-allow-async-commit"] });
    const status = await runCli(["status", "--data-dir", network.dir, "--gateway", network.gatewayAddress]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /store postgres .*synchronous_commit=off; UNSAFE/);
  });

  it("paynet db migrate and export: the schemas at their version, a bank's accounts in the seed's CSV format", async () => {
    const net = await startNetwork();
    const paid = await net.pay("alice", "SBI", "bob", "HDFC", "10.00");
    assert.equal(paid.json?.status, "committed", paid.stderr);
    const migrated = await runCli(["db", "migrate", "--data-dir", net.dir, ...store()]);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.match(migrated.stdout, /gateway: schema paynet_gateway at version \d+ \(nothing to apply\)/);
    assert.match(migrated.stdout, /bank SBI: schema paynet_bank_sbi at version \d+/);
    const exported = await runCli(["db", "export", "--bank", "SBI", "--data-dir", net.dir, ...store()]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(
      exported.stdout,
      /^username,balance,password,bank\nalice,990,scrypt\$[^,]+,SBI\ncarol,750,scrypt\$[^,]+,SBI\n$/,
    );
    const files = await runCli(["db", "export", "--bank", "SBI", "--data-dir", net.dir]);
    assert.notEqual(files.code, 0);
    assert.match(files.stderr, /--store postgres/);
  });

  it("refuses a --store that is neither files nor a PostgreSQL URL as a usage error", async () => {
    const result = await runCli(["gateway", "--store", "mysql://x@y/z", "--port", "0"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--store must be "files" or a PostgreSQL URL/);
  });
});
