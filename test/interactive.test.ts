// The interactive client driven as a person would: keystrokes into a real terminal (tmux), the screen read back.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Network, cliPath, waitUntil } from "./helpers/network.js";

const run = promisify(execFile);
const session = `paynet-test-${process.pid}`;

async function tmux(...args: string[]): Promise<string> {
  const { stdout } = await run("tmux", args);
  return stdout;
}

const screen = () => tmux("capture-pane", "-p", "-t", session);
const keys = (...sequence: string[]) => tmux("send-keys", "-t", session, "--", ...sequence);

/** Waits until `text` appears at least `count` times: a prompt asked again is on screen twice. */
async function waitForCount(text: string, count: number): Promise<void> {
  await waitForScreen(new RegExp(`(${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[\\s\\S]*){${count}}`));
}

async function waitForScreen(pattern: RegExp): Promise<string> {
  let last = "";
  await waitUntil(async () => pattern.test((last = await screen())), `the screen to show ${pattern}`, 30_000).catch(
    (error: Error) => {
      throw new Error(`${error.message}; the screen was:\n${last}`);
    },
  );
  return last;
}

/** Waits until the newest menu header on screen (the open menu, or the answer echoed last) reads `header`. */
async function waitForHeader(account: string, state: string): Promise<void> {
  const headers = new RegExp(`${account.replace(/[.@]/g, "\\$&")} \\(([^)]*)\\)`, "g");
  let last = "";
  await waitUntil(
    async () => {
      last = await screen();
      return [...last.matchAll(headers)].at(-1)?.[1] === state;
    },
    `the header ${account} (${state})`,
    30_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; the screen was:\n${last}`);
  });
}

async function startClient(network: Network): Promise<void> {
  await tmux("kill-session", "-t", session).catch(() => undefined);
  const command = `${process.execPath} ${cliPath} client --data-dir ${network.dir} --gateway ${network.gatewayAddress}; echo "EXITED $?"; sleep 30`;
  await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command);
}

describe("interactive client in a terminal", () => {
  let network: Network;

  before(async () => {
    await run("tmux", ["-V"]).catch(() => {
      throw new Error("tmux is needed for this test: apt-get install tmux (.ci/run installs it)");
    });
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
  });
  after(async () => {
    await tmux("kill-session", "-t", session).catch(() => undefined);
    await network.destroy();
  });

  it("logs in (after a wrong password), shows the balance, pays, lists history and exits", async () => {
    const command = `${process.execPath} ${cliPath} client --data-dir ${network.dir} --gateway ${network.gatewayAddress}; echo "EXITED $?"; sleep 30`;
    await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command);

    await waitForScreen(/Username/);
    await keys("alice", "Enter");
    await waitForScreen(/Bank/);
    await keys("SBI", "Enter");
    await waitForScreen(/Password/);
    await keys("wrong-password", "Enter");
    await waitForScreen(/UNAUTHENTICATED/);
    await waitForCount("Username", 2);
    await keys("alice", "Enter");
    await waitForCount("Bank", 2);
    await keys("SBI", "Enter");
    await waitForCount("Password", 2);
    await keys("alice123", "Enter");
    await waitForScreen(/logged in as alice@SBI/);
    const masked = await screen();
    assert.ok(!masked.includes("alice123"), "the password is never echoed");

    await waitForScreen(/View balance/);
    await keys("Enter"); // View balance
    await waitForScreen(/balance 1000\.00/);
    await waitForCount("alice@SBI (online)", 1);

    await waitForCount("alice@SBI (online)", 1);
    await keys("Down", "Enter"); // Make a payment
    await waitForScreen(/Receiver username/);
    await keys("bob", "Enter");
    await waitForScreen(/Receiver bank/);
    await keys("HDFC", "Enter");
    await waitForScreen(/Amount/);
    await keys("-3", "Enter");
    await waitForScreen(/must be a positive decimal/);
    await keys("C-u", "12.50", "Enter");
    await waitForScreen(/committed 12\.50 from alice@SBI to bob@HDFC; balance now 987\.50/);

    await waitForCount("alice@SBI (online)", 2);
    await keys("Down", "Down", "Down", "Enter"); // Recent payments
    await waitForScreen(/committed 12\.50 from alice@SBI to bob@HDFC [0-9a-f]{12}\s*\n[\s\S]*alice@SBI \(online\)/);

    await waitForCount("alice@SBI (online)", 3);
    await keys("Up", "Enter"); // Exit is one above the top, wrapping around
    await waitForScreen(/EXITED 0/);

    const balances = await network.balancesOnDisk();
    assert.equal(balances.get("alice@SBI"), 98750n);
    assert.equal(balances.get("bob@HDFC"), 51250n);
  });

  it("exits cleanly on Ctrl-C at a prompt", async () => {
    await tmux("kill-session", "-t", session).catch(() => undefined);
    const command = `${process.execPath} ${cliPath} client --data-dir ${network.dir} --gateway ${network.gatewayAddress}; echo "EXITED $?"; sleep 30`;
    await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command);
    await waitForScreen(/Username/);
    await keys("C-c");
    const shown = await waitForScreen(/EXITED 0/);
    assert.ok(!/Error|at .*\.js:\d+/.test(shown), `no stack trace on screen:\n${shown}`);
  });

  it("follows gateway restarts without a key press: header redrawn, queue sent, session renewed silently", async () => {
    await startClient(network);
    await waitForScreen(/Username/);
    await keys("carol", "Enter");
    await waitForScreen(/Bank/);
    await keys("SBI", "Enter");
    await waitForScreen(/Password/);
    await keys("carol123", "Enter");
    await waitForHeader("carol@SBI", "online");

    // Item 2: the open menu follows the connection, both ways, with no key pressed.
    await network.gateway!.stop("SIGKILL");
    await waitForHeader("carol@SBI", "offline");
    await keys("Down", "Enter"); // Make a payment
    await waitForScreen(/Receiver username/);
    await keys("dave", "Enter");
    await waitForScreen(/Receiver bank/);
    await keys("HDFC", "Enter");
    await waitForScreen(/Amount/);
    await keys("2.00", "Enter");
    await waitForScreen(/queued 2\.00 from carol@SBI to dave@HDFC/);
    await waitForHeader("carol@SBI", "offline, 1 queued");
    await network.startGateway();
    // The restarted gateway accepts the session's token (signed with the data dir's key): the queue is sent.
    await waitForScreen(/the gateway is reachable again[\s\S]*committed 2\.00 from carol@SBI to dave@HDFC/);
    await waitForHeader("carol@SBI", "online");

    // Item 1: after another restart, the balance is shown, with no UNAUTHENTICATED and no password asked.
    await network.gateway!.stop("SIGKILL");
    await waitForHeader("carol@SBI", "offline");
    await network.startGateway();
    await waitForHeader("carol@SBI", "online");
    await keys("Enter"); // View balance
    const shown = await waitForScreen(/balance 748\.00/);
    assert.ok(!shown.includes("UNAUTHENTICATED"), `no refusal on screen:\n${shown}`);
    assert.equal((shown.match(/Password/g) ?? []).length, 1, "the password was asked once, at the start");

    await waitForHeader("carol@SBI", "online");
    await keys("Up", "Enter"); // Exit
    await waitForScreen(/EXITED 0/);
    await network.settled();
    const balances = await network.balancesOnDisk();
    assert.equal(balances.get("carol@SBI"), 74800n);
    assert.equal(balances.get("dave@HDFC"), 25250n);
  });
});
