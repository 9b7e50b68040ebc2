// A real terminal for a paynet process (tmux): start a command in it, read the screen, type keys.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { waitUntil } from "./network.js";

const run = promisify(execFile);

async function tmux(...args: string[]): Promise<string> {
  const { stdout } = await run("tmux", args);
  return stdout;
}

const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

/** One tmux session running one command; the screen stays after the command ends, with its exit code. */
export class Terminal {
  readonly session: string;

  private constructor(session: string) {
    this.session = session;
  }

  /**
   * Runs `node <args…>` in a new 120×40 terminal. `unset` names variables removed from its environment: a tmux
   * server started by someone else passes on its own environment, not this process's.
   */
  static async start(name: string, args: string[], options: { unset?: string[] } = {}): Promise<Terminal> {
    await run("tmux", ["-V"]).catch(() => {
      throw new Error("tmux is needed for this test: apt-get install tmux (.ci/run installs it)");
    });
    const session = `paynet-${name}-${process.pid}`;
    await tmux("kill-session", "-t", session).catch(() => undefined);
    const unset = (options.unset ?? []).map((variable) => `-u ${variable}`).join(" ");
    const command = `env ${unset} FORCE_COLOR=0 ${[process.execPath, ...args].map(quote).join(" ")}; echo "EXITED $?"; sleep 60`;
    await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command);
    return new Terminal(session);
  }

  screen(): Promise<string> {
    return tmux("capture-pane", "-p", "-t", this.session);
  }

  async keys(...sequence: string[]): Promise<void> {
    await tmux("send-keys", "-t", this.session, "--", ...sequence);
  }

  /** Waits until the screen matches `pattern`; returns the screen. */
  async waitFor(pattern: RegExp): Promise<string> {
    let last = "";
    await waitUntil(async () => pattern.test((last = await this.screen())), `the screen to show ${pattern}`).catch(
      (error: Error) => {
        throw new Error(`${error.message}; the screen was:\n${last}`);
      },
    );
    return last;
  }

  async close(): Promise<void> {
    await tmux("kill-session", "-t", this.session).catch(() => undefined);
  }
}
