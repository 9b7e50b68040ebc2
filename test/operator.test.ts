// The operator's view: status of in-doubt payments, one payment by id, Prometheus metrics, structured logs.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Network, Proc, cliPath, networkPerTest, passwords, runCli, waitUntil } from "./helpers/network.js";
import type { PaymentError } from "../src/core/domain/errors.js";

const call = { timeoutMs: 30_000 };
const run = promisify(execFile);

function pay(
  network: Network,
  from: string,
  fromBank: string,
  to: string,
  toBank: string,
  amountMinor: bigint,
  paymentId: string,
): Promise<PaymentError | null> {
  return network.rawPay({ from, fromBank, to, toBank, amountMinor, paymentId });
}

/** Parses Prometheus text exposition: every line must be a comment or `name{labels} value`. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const match =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|[Nn]a[Nn]|\+Inf|-Inf)$/.exec(
        line,
      );
    assert.ok(match, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    samples.set(`${match[1]}${match[2] ?? ""}`, Number(match[3]));
  }
  return samples;
}

describe("operator view", () => {
  // A test that paused HDFC must not leave it stopped: a stopped process would outlive the network.
  const networks = networkPerTest({
    beforeDestroy: async (network) => void network.banks.get("HDFC")?.child.kill("SIGCONT"),
  });

  it("status shows a bank that is down and the payment held in doubt until it returns", async () => {
    const net = await networks.create();
    await net.start(["SBI", "HDFC"]);
    const hdfc = net.banks.get("HDFC")!;
    hdfc.child.kill("SIGSTOP");

    const error = await pay(net, "alice", "SBI", "bob", "HDFC", 700n, "held-in-doubt-1");
    assert.equal(error?.code, "BANK_UNAVAILABLE");
    const status = await runCli(["status", "--json", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const report = status.json as {
      banks: Array<{ name: string; up: boolean; holds: number }>;
      payments: Record<string, number>;
      inDoubt: Array<{ id: string; state: string; from: string; to: string; amount: string }>;
      offlineQueue: number;
    };
    assert.deepEqual(report.banks.map((bank) => [bank.name, bank.up]).sort(), [
      ["HDFC", false],
      ["SBI", true],
    ]);
    assert.equal(report.banks.find((bank) => bank.name === "SBI")?.holds, 0, "SBI released its hold on the abort");
    assert.equal(report.payments.aborting, 1, "decided abort, not yet acknowledged by HDFC");
    assert.deepEqual(
      report.inDoubt.map((payment) => [payment.id, payment.state, payment.from, payment.to, payment.amount]),
      [["held-in-doubt-1", "aborted", "alice@SBI", "bob@HDFC", "7.00"]],
    );
    assert.equal(report.offlineQueue, 0);

    const human = await runCli(["status", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
    assert.match(human.stdout, new RegExp(`^gateway ${net.gatewayAddress.replaceAll(".", "\\.")}  store files\n`));
    assert.match(human.stdout, /HDFC\s+down/);
    assert.match(human.stdout, /oldest in doubt\n.*aborted\s+7\.00 alice@SBI → bob@HDFC \(payment held-in-doubt-1\)/);

    hdfc.child.kill("SIGCONT");
    await waitUntil(
      async () => (await net.gatewayRecord("held-in-doubt-1"))?.finished === true,
      "the abort to reach HDFC",
    );
    const healed = await runCli(["status", "--json", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
    const healedReport = healed.json as typeof report;
    assert.deepEqual(
      healedReport.banks.map((bank) => bank.up),
      [true, true],
    );
    assert.equal(healedReport.payments.aborting, 0);
    assert.equal(healedReport.payments.aborted, 1);
    assert.deepEqual(healedReport.inDoubt, []);

    const one = await runCli([
      "payment",
      "held-in-doubt-1",
      "--json",
      "--data-dir",
      net.dir,
      "--gateway",
      net.gatewayAddress,
    ]);
    assert.equal(one.code, 0, one.stdout + one.stderr);
    assert.equal(one.json?.state, "aborted");
    assert.equal(one.json?.finished, true);
    assert.equal(one.json?.reason, "BANK_UNAVAILABLE");
    const events = (one.json?.timeline as Array<{ event: string }>).map((event) => event.event);
    assert.deepEqual(events.slice(0, 4), [
      "begun",
      "SBI (payer) voted yes",
      "HDFC (payee) did not answer the prepare in time",
      "decided abort (BANK_UNAVAILABLE)",
    ]);
    assert.deepEqual(events.slice(4).sort(), [
      "HDFC (payee) acknowledged the abort",
      "SBI (payer) acknowledged the abort",
      "finished",
    ]);
    for (const key of ["createdAt", "decidedAt", "finishedAt"])
      assert.match(String(one.json?.[key]), /^\d{4}-\d\d-\d\dT/);
    const unknown = await runCli([
      "payment",
      "no-such-payment",
      "--json",
      "--data-dir",
      net.dir,
      "--gateway",
      net.gatewayAddress,
    ]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.json?.error, "UNKNOWN_PAYMENT");
  });

  it("status --watch without a terminal prints a block per interval, watches on while the gateway is down, and stops on SIGINT", async () => {
    const net = await networks.create();
    await net.start(["SBI", "HDFC"]);
    // No --gateway: the address comes from the data dir, as it would for an operator on the gateway's machine.
    const watch = new Proc("status --watch", ["status", "--watch", "--interval-ms", "200", "--data-dir", net.dir]);
    const after = async (from: number, pattern: RegExp, what: string) => {
      await waitUntil(() => watch.lines.slice(from).some((line) => pattern.test(line)), what);
      return watch.lines.length;
    };
    try {
      // A rate needs two samples: its line means a second block.
      await watch.waitFor(/^payments\/s over the last [0-9.]+ m?s: [0-9.]+ committed, [0-9.]+ aborted$/);
      const headers = watch.lines.filter((line) =>
        line.startsWith(`paynet status: gateway ${net.gatewayAddress}, every 200 ms, `),
      );
      assert.ok(headers.length >= 2, watch.lines.join("\n"));
      assert.ok(watch.lines.includes("  SBI        up   holds    0"), watch.lines.join("\n"));
      assert.ok(watch.lines.includes("in doubt: 0"), watch.lines.join("\n"));

      await net.gateway!.stop();
      let seen = await after(
        0,
        new RegExp(
          `^gateway at ${net.gatewayAddress.replaceAll(".", "\\.")} is not reachable \\(for .+\\); still watching$`,
        ),
        "the watch to say the gateway is down",
      );
      seen = await after(seen, /is not reachable/, "a second sample while it is down");
      assert.ok(watch.running, "the watch goes on while the gateway is down");

      await net.startGateway();
      await after(seen, /^payments\/s: from the next sample/, "the status again once the gateway is back");

      watch.child.kill("SIGINT");
      assert.deepEqual(await watch.exited, { code: 0, signal: null });
      assert.ok(!watch.lines.some((line) => line.includes("\u001b")), "no cursor escapes without a terminal");
    } finally {
      await watch.stop();
    }
  });

  it("status --watch on a terminal redraws its view in place until Ctrl-C (exit 0)", async () => {
    const net = await networks.create();
    await net.start(["SBI", "HDFC"]);
    const session = `paynet-watch-${process.pid}`;
    const tmux = async (...args: string[]) => (await run("tmux", args)).stdout;
    const command = `${process.execPath} ${cliPath} status --watch --interval-ms 200 --data-dir ${net.dir}; echo "EXITED $?"; sleep 30`;
    await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", command);
    try {
      let screen = "";
      const shows = async (pattern: RegExp, what: string) =>
        waitUntil(async () => pattern.test((screen = await tmux("capture-pane", "-p", "-t", session))), what).catch(
          (error: Error) => {
            throw new Error(`${error.message}; the screen was:\n${screen}`);
          },
        );
      // A rate needs two samples: the second is drawn over the first.
      await shows(/payments\/s over the last/, "a second sample");
      assert.equal(screen.match(/paynet status: gateway/g)?.length, 1, `one view on screen, redrawn:\n${screen}`);
      assert.match(screen, /^paynet status: gateway .*\(Ctrl-C to stop\)$/m);
      assert.match(screen, /^ {2}HDFC +up +holds +0$/m);
      await tmux("send-keys", "-t", session, "C-c");
      await shows(/EXITED 0/, "the watch to exit 0 on Ctrl-C");
    } finally {
      await tmux("kill-session", "-t", session).catch(() => undefined);
    }
  });

  it("refuses the operator RPCs to a client certificate", async () => {
    const network = await networks.create();
    await network.start(["SBI", "HDFC"]);
    const gateway = await network.gatewayClient();
    try {
      await assert.rejects(gateway.getStatus({}, call), (error: PaymentError) => error.code === "PERMISSION_DENIED");
      await assert.rejects(
        gateway.getPayment({ paymentId: "x" }, call),
        (error: PaymentError) => error.code === "PERMISSION_DENIED",
      );
    } finally {
      gateway.close();
    }
  });
});

describe("metrics and logs", () => {
  let network: Network;
  const metricsPorts = new Map<string, number>();

  before(async () => {
    network = await Network.create();
    // Each payment's life is logged at debug level, which an operator turns on with PAYNET_LOG_LEVEL.
    const metricsArgs = { args: ["--metrics-port", "0"], env: { PAYNET_LOG_LEVEL: "debug" } };
    await network.startGateway(metricsArgs);
    await Promise.all(["SBI", "HDFC"].map((bank) => network.startBank(bank, metricsArgs)));
    for (const [name, proc] of [
      ["gateway", network.gateway!],
      ...[...network.banks].map(([bank, proc]) => [bank, proc] as const),
    ] as const) {
      const [, port] = await proc.waitFor(/metrics on http:\/\/127\.0\.0\.1:([0-9]+)\/metrics/);
      metricsPorts.set(name, Number(port));
    }
    assert.equal(await pay(network, "alice", "SBI", "bob", "HDFC", 100n, "metrics-1"), null);
    assert.equal(await pay(network, "bob", "HDFC", "carol", "SBI", 200n, "metrics-2"), null);
    assert.equal(await pay(network, "alice", "SBI", "carol", "SBI", 300n, "metrics-3"), null);
    assert.equal(
      (await pay(network, "dave", "HDFC", "alice", "SBI", 10_000_000n, "metrics-4"))?.code,
      "INSUFFICIENT_FUNDS",
    );
    await waitUntil(async () => {
      for (const id of ["metrics-1", "metrics-2", "metrics-3", "metrics-4"])
        if ((await network.gatewayRecord(id))?.finished !== true) return false;
      return true;
    }, "every payment to finish");
  });
  after(async () => network.destroy());

  async function scrape(name: string): Promise<Map<string, number>> {
    const response = await fetch(`http://127.0.0.1:${metricsPorts.get(name)}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
    return parsePrometheus(await response.text());
  }

  it("the gateway's counters match the payments made", async () => {
    const samples = await scrape("gateway");
    assert.equal(samples.get('paynet_payments_total{outcome="committed",kind="cross_bank"}'), 2);
    assert.equal(samples.get('paynet_payments_total{outcome="committed",kind="same_bank"}'), 1);
    assert.equal(samples.get('paynet_payments_total{outcome="aborted",kind="cross_bank"}'), 1);
    assert.equal(samples.get('paynet_2pc_phase_seconds_count{phase="prepare"}'), 3);
    assert.equal(samples.get('paynet_2pc_phase_seconds_count{phase="commit"}'), 2);
    assert.equal(samples.get('paynet_2pc_phase_seconds_count{phase="abort"}'), 1);
    assert.equal(samples.get("paynet_payments_in_doubt"), 0);
    assert.equal(samples.get('paynet_rpc_errors_total{method="MakePayment",reason="INSUFFICIENT_FUNDS"}'), 1);
    assert.ok((samples.get('paynet_fsync_seconds_count{file="transaction_logs.journal"}') ?? 0) >= 4);
    assert.ok((samples.get('paynet_group_commit_batch_size_count{file="transaction_logs.journal"}') ?? 0) >= 1);
  });

  it("each bank reports its holds, fsyncs and refusals", async () => {
    // Every change is fsynced in the bank's journal before its answer; checkpoints fold it into the shared files soon after.
    await waitUntil(
      async () => ((await scrape("HDFC")).get('paynet_fsync_seconds_count{file="dummydata.csv"}') ?? 0) >= 1,
      "a checkpoint of HDFC's rows",
    );
    const hdfc = await scrape("HDFC");
    assert.equal(hdfc.get("paynet_bank_holds"), 0);
    assert.ok((hdfc.get('paynet_fsync_seconds_count{file="journal_HDFC"}') ?? 0) >= 3);
    assert.ok((hdfc.get('paynet_group_commit_batch_size_count{file="journal_HDFC"}') ?? 0) >= 3);
    assert.ok((hdfc.get('paynet_fsync_seconds_count{file="pending_transactions.json"}') ?? 0) >= 1);
    assert.equal(hdfc.get('paynet_rpc_errors_total{method="PrepareBatch",reason="INSUFFICIENT_FUNDS"}'), 1);
  });

  it("logs one JSON object per line, with the payment id on every line of a payment's life (at debug level)", async () => {
    const procs = [network.gateway!, ...network.banks.values()];
    const records = procs.flatMap((proc) =>
      proc.lines.map((line) => {
        const record = JSON.parse(line) as Record<string, unknown>;
        for (const key of ["level", "time", "role", "msg"]) assert.ok(key in record, `${key} missing in ${line}`);
        return record;
      }),
    );
    const lifeOf = (id: string) =>
      records
        .filter((record) => record.paymentId === id)
        .map((record) => `${String(record.role)}: ${String(record.msg)}`);
    assert.deepEqual(lifeOf("metrics-1").sort(), [
      "bank HDFC: committed",
      "bank HDFC: voted yes: hold recorded",
      "bank SBI: committed",
      "bank SBI: voted yes: hold recorded",
      "gateway: decision logged",
      "gateway: payment begun",
      "gateway: payment finished",
    ]);
    assert.deepEqual(lifeOf("metrics-3").sort(), [
      "bank SBI: same-bank transfer applied",
      "gateway: payment begun",
      "gateway: payment finished",
    ]);
    for (const record of records) {
      const text = JSON.stringify(record);
      for (const password of Object.values(passwords))
        assert.ok(!text.includes(password), `a password in a log line: ${text}`);
    }
  });

  // The payments made above, as `paynet payment` tells their lives.
  const timelineOf = async (id: string) => {
    const json = await runCli([
      "payment",
      id,
      "--json",
      "--data-dir",
      network.dir,
      "--gateway",
      network.gatewayAddress,
    ]);
    assert.equal(json.code, 0, json.stdout + json.stderr);
    const human = await runCli(["payment", id, "--data-dir", network.dir, "--gateway", network.gatewayAddress]);
    assert.equal(human.code, 0, human.stdout + human.stderr);
    const timeline = json.json?.timeline as Array<{ at: string; afterMs: number | null; event: string }>;
    // The votes (events 1-2) and the acknowledgements (4-5) are listed by time: which bank answered first may
    // vary, so each pair is compared sorted.
    const sortedWithin = (events: string[], from: number, to: number) => [
      ...events.slice(0, from),
      ...events.slice(from, to).sort(),
      ...events.slice(to),
    ];
    const events = sortedWithin(
      sortedWithin(
        timeline.map((event) => event.event),
        1,
        3,
      ),
      4,
      6,
    );
    return { json: json.json!, human: human.stdout, events };
  };
  /** A line of the human timeline: its time, the duration since the event before, the event. */
  const line = (event: string) =>
    new RegExp(`^  \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z +\\+[0-9.]+ (ms|s)  ${event.replace(/[()]/g, "\\$&")}$`, "m");

  it("paynet payment shows a committed payment's timeline: each bank's vote and acknowledgement, with durations", async () => {
    const { json, human, events } = await timelineOf("metrics-1");
    assert.deepEqual(events, [
      "begun",
      "HDFC (payee) voted yes",
      "SBI (payer) voted yes",
      "decided commit",
      "HDFC (payee) acknowledged the commit",
      "SBI (payer) acknowledged the commit",
      "finished",
    ]);
    assert.deepEqual(
      (json.legs as Array<Record<string, unknown>>).map((leg) => [leg.bank, leg.role, leg.vote]),
      [
        ["SBI", "payer", "yes"],
        ["HDFC", "payee", "yes"],
      ],
    );
    assert.match(
      human,
      /^metrics-1: committed \(finished\) 1\.00 alice@SBI → bob@HDFC\n {2}\d{4}-[0-9:.T-]+Z +begun\n/,
    );
    for (const event of [
      "SBI (payer) voted yes",
      "HDFC (payee) voted yes",
      "decided commit",
      "SBI (payer) acknowledged the commit",
      "HDFC (payee) acknowledged the commit",
      "finished",
    ])
      assert.match(human, line(event), event);
  });

  it("paynet payment shows an aborted payment's refused vote and the abort each bank acknowledged", async () => {
    const { human, events } = await timelineOf("metrics-4");
    assert.deepEqual(events, [
      "begun",
      "HDFC (payer) voted no",
      "SBI (payee) voted yes",
      "decided abort (INSUFFICIENT_FUNDS)",
      "HDFC (payer) acknowledged the abort",
      "SBI (payee) acknowledged the abort",
      "finished",
    ]);
    assert.match(human, line("HDFC (payer) voted no"));
    assert.match(human, /^ {2}reason INSUFFICIENT_FUNDS: /m);
    const local = await timelineOf("metrics-3");
    assert.deepEqual(local.events, ["begun", "decided commit", "finished"], "a same-bank payment has no legs");
  });
});
