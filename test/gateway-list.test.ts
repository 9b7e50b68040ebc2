// Gateway address lists: `--gateway A,B,…` as the CLI parses it, and client/current_port_server.txt, the list the
// gateways of a data dir keep (one per line, newest first, bounded, rewritten atomically under its lock).
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gatewayAddressesMax, parseAddressList } from "../src/core/domain/validate.js";
import { PaymentError } from "../src/core/domain/errors.js";
import {
  addGatewayLine,
  formatGatewayList,
  parseGatewayList,
  readGatewayList,
  removeGatewayLine,
  withGatewayFirst,
} from "../src/core/durable/gateway-list-file.js";
import { nextAddress } from "../src/roles/status.js";

const many = (count: number) => Array.from({ length: count }, (_, index) => `127.0.0.1:${9000 + index}`);

describe("parseAddressList (--gateway A,B,…)", () => {
  const valid: Array<[string, string, string[]]> = [
    ["one address", "127.0.0.1:8080", ["127.0.0.1:8080"]],
    ["three", "127.0.0.1:1,gw.example:2,[::1]:3", ["127.0.0.1:1", "gw.example:2", "[::1]:3"]],
    ["spaces around commas", "127.0.0.1:1 , 127.0.0.1:2", ["127.0.0.1:1", "127.0.0.1:2"]],
    ["a repeat is dropped, the first kept", "127.0.0.1:2,127.0.0.1:1,127.0.0.1:2", ["127.0.0.1:2", "127.0.0.1:1"]],
    ["port 65535, the largest", "h:65535", ["h:65535"]],
    [`${gatewayAddressesMax} addresses, the most`, many(gatewayAddressesMax).join(","), many(gatewayAddressesMax)],
  ];
  for (const [what, input, expected] of valid)
    it(`accepts ${what}`, () => assert.deepEqual(parseAddressList(input, "--gateway"), expected));

  const invalid: Array<[string, string, RegExp]> = [
    ["an empty value", "", /--gateway must be host:port\[,host:port…\]/],
    [
      "an empty entry",
      "127.0.0.1:1,,127.0.0.1:2",
      /--gateway must be host:port\[,host:port…\], got "127.0.0.1:1,,127.0.0.1:2"/,
    ],
    ["a trailing comma", "127.0.0.1:1,", /--gateway must be host:port\[,host:port…\]/],
    ["no port", "127.0.0.1", /--gateway must be host:port with a port in 1-65535, got "127.0.0.1"/],
    ["port 0", "h:0", /port in 1-65535, got "h:0"/],
    ["port 65536", "h:65536", /port in 1-65535, got "h:65536"/],
    ["a URL", "https://h:1", /got "https:\/\/h:1"/],
    [`${gatewayAddressesMax + 1} addresses`, many(gatewayAddressesMax + 1).join(","), /names 17 addresses; at most 16/],
  ];
  for (const [what, input, message] of invalid)
    it(`refuses ${what}`, () =>
      assert.throws(
        () => parseAddressList(input, "--gateway"),
        (error: unknown) =>
          error instanceof PaymentError && error.code === "INVALID_ARGUMENT" && message.test(error.message),
      ));
});

describe("parseGatewayList (client/current_port_server.txt)", () => {
  const cases: Array<[string, string, string[], number[]]> = [
    ["an empty file", "", [], []],
    ["one line, as earlier builds wrote it", "127.0.0.1:8080\n", ["127.0.0.1:8080"], []],
    ["no final newline", "127.0.0.1:1\n127.0.0.1:2", ["127.0.0.1:1", "127.0.0.1:2"], []],
    ["blank lines and spaces", "\n  127.0.0.1:1  \n\n\r\n127.0.0.1:2\n\n", ["127.0.0.1:1", "127.0.0.1:2"], []],
    ["CRLF line ends", "127.0.0.1:1\r\n127.0.0.1:2\r\n", ["127.0.0.1:1", "127.0.0.1:2"], []],
    [
      "a line that is no address is skipped",
      "127.0.0.1:1\ngarbage\n127.0.0.1:2\n",
      ["127.0.0.1:1", "127.0.0.1:2"],
      [2],
    ],
    ["a repeated line counts once", "127.0.0.1:1\n127.0.0.1:1\n", ["127.0.0.1:1"], []],
    ["more than 16 lines: the first 16", formatGatewayList(many(20)), many(16), []],
  ];
  for (const [what, text, addresses, badLines] of cases)
    it(`reads ${what}`, () => assert.deepEqual(parseGatewayList(text), { addresses, badLines }));

  it("withGatewayFirst moves a known address to the top and drops the oldest beyond 16", () => {
    assert.deepEqual(withGatewayFirst(["a:1", "b:2", "c:3"], "c:3"), ["c:3", "a:1", "b:2"]);
    assert.deepEqual(withGatewayFirst(["a:1"], "b:2"), ["b:2", "a:1"]);
    const full = withGatewayFirst(many(16), "new:1");
    assert.equal(full.length, 16);
    assert.equal(full[0], "new:1");
    assert.ok(!full.includes(many(16)[15]!), "the oldest line fell off");
  });

  it("nextAddress walks the list round, and starts again at the top when the current one is gone", () => {
    assert.equal(nextAddress(["a:1", "b:2", "c:3"], null), "a:1");
    assert.equal(nextAddress(["a:1", "b:2", "c:3"], "a:1"), "b:2");
    assert.equal(nextAddress(["a:1", "b:2", "c:3"], "c:3"), "a:1");
    assert.equal(nextAddress(["a:1", "b:2"], "gone:9"), "a:1");
    assert.equal(nextAddress(["a:1"], "a:1"), "a:1");
  });
});

describe("the gateway list file", () => {
  const dirs: string[] = [];
  after(async () => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const newFile = async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-gateway-list-"));
    dirs.push(dir);
    return { dir, path: join(dir, "client", "current_port_server.txt") };
  };

  it("a missing file is an empty list", async () => {
    const { path } = await newFile();
    assert.deepEqual(await readGatewayList(path), []);
  });

  it("gateways starting at once all get their line (the lock serializes the read-modify-writes)", async () => {
    const { dir, path } = await newFile();
    const addresses = many(12);
    await Promise.all(addresses.map((address) => addGatewayLine(path, address, { alone: false })));
    assert.deepEqual([...(await readGatewayList(path))].sort(), [...addresses].sort());
    const leftovers = (await readdir(join(dir, "client"))).filter((name) => name.endsWith(".tmp"));
    assert.deepEqual(leftovers, [], "no temp file is left behind");
  });

  it("a restart moves its line to the top; alone (the files store) replaces the list", async () => {
    const { path } = await newFile();
    await addGatewayLine(path, "127.0.0.1:1", { alone: false });
    await addGatewayLine(path, "127.0.0.1:2", { alone: false });
    await addGatewayLine(path, "127.0.0.1:1", { alone: false });
    assert.equal(await readFile(path, "utf8"), "127.0.0.1:1\n127.0.0.1:2\n");
    await addGatewayLine(path, "127.0.0.1:3", { alone: true });
    assert.equal(await readFile(path, "utf8"), "127.0.0.1:3\n");
  });

  it("an orderly stop removes its line, but never the last one; a damaged line is dropped by the next rewrite", async () => {
    const { path } = await newFile();
    await addGatewayLine(path, "127.0.0.1:1", { alone: false });
    await writeFile(path, `\n127.0.0.1:2\nnot an address\n\n${await readFile(path, "utf8")}`);
    await removeGatewayLine(path, "127.0.0.1:2");
    assert.equal(await readFile(path, "utf8"), "127.0.0.1:1\n");
    await removeGatewayLine(path, "127.0.0.1:1");
    assert.equal(await readFile(path, "utf8"), "127.0.0.1:1\n", "the last gateway's address stays for its return");
    await removeGatewayLine(path, "127.0.0.1:9");
    assert.equal(await readFile(path, "utf8"), "127.0.0.1:1\n");
  });
});
