// The help as a new user meets it: `paynet` alone, every command's --help with its exit codes, time flags with units.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "./helpers/network.js";
import { exitCodeLines } from "../src/roles/exit-codes.js";

const helps = new Map<string, ReturnType<typeof runCli>>();

/** Each command's help is run once and read by several tests (a process start is most of a test's time). */
function help(command: string[]): ReturnType<typeof runCli> {
  const key = command.join(" ");
  if (!helps.has(key)) helps.set(key, runCli([...command, "--help"]));
  return helps.get(key)!;
}

describe("paynet help", () => {
  it("prints the help and exits 0 when run with no command", async () => {
    const result = await runCli([]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Commands:/);
    assert.match(result.stdout, /paynet client/);
    assert.equal(result.stderr, "");
  });

  const commands: Array<[string[], keyof typeof exitCodeLines]> = [
    [["up"], "up"],
    [["gateway"], "gateway"],
    [["bank"], "bank"],
    [["client"], "client"],
    [["client", "balance"], "client"],
    [["client", "pay"], "client"],
    [["client", "sync"], "client"],
    [["client", "queue"], "client"],
    [["client", "history"], "client"],
    [["status"], "status"],
    [["payment"], "payment"],
    [["bench"], "bench"],
    [["verify"], "verify"],
    [["certs"], "certs"],
    [["db", "migrate"], "db"],
    [["db", "export"], "db"],
  ];
  for (const [command, codes] of commands) {
    it(`paynet ${command.join(" ")} --help lists its exit codes`, async () => {
      const result = await help(command);
      assert.equal(result.code, 0, result.stderr);
      const block = result.stdout.slice(result.stdout.indexOf("Exit codes:"));
      assert.ok(block.startsWith("Exit codes:"), result.stdout);
      // yargs wraps the block at the terminal's width: compare with the spaces folded.
      const folded = block.replace(/\s+/g, " ");
      for (const [code, meaning] of exitCodeLines[codes])
        assert.ok(folded.includes(`${code} ${meaning.replace(/\s+/g, " ")}`), `code ${code} in:\n${block}`);
    });
  }

  it("names verify's time flags with their unit and hides their old spellings", async () => {
    const result = await help(["verify"]);
    assert.equal(result.code, 0, result.stderr);
    for (const flag of ["--duration-s", "--kill-every-ms", "--recovery-timeout-ms", "--pause-max-ms"])
      assert.match(result.stdout, new RegExp(`${flag}\\b`));
    for (const old of ["--duration ", "--kill-every ", "--recovery-timeout "])
      assert.ok(!result.stdout.includes(old), `${old.trim()} is shown:\n${result.stdout}`);
  });

  it("says that every time flag carries its unit: no option of any command takes a bare time", async () => {
    // A flag whose description talks of seconds or milliseconds names its unit (…-ms, …-s) itself.
    const unitless: string[] = [];
    for (const [command] of commands) {
      const { stdout } = await help(command);
      for (const match of stdout.matchAll(/^ {2}(--[a-z-]+)[^\n]*(?:\n {10,}[^\n]*)*/gm)) {
        const [text, flag] = match as unknown as [string, string];
        if (/\b(milliseconds|seconds)\b/.test(text) && !/-(ms|s)$/.test(flag))
          unitless.push(`${command.join(" ")} ${flag}`);
      }
    }
    assert.deepEqual(unitless, []);
  });
});
