// Specification of src/core/durable/jsonl.ts: the schema toolkit that decodes untrusted records (one
// definition of an int64 on disk), and the one reader of append-only JSON-lines files (torn last line, bad
// lines refused by file and line, a bound on a line's length). Errors are asserted by class, code and field.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  JsonLinesError,
  RecordDecodeError,
  array,
  boolean,
  decodeJsonLines,
  decodeRecord,
  fitsOneLine,
  int64Max,
  int64Min,
  int64String,
  literal,
  maxLineBytesDefault,
  minorUnits,
  nonEmptyString,
  nullable,
  nullWhenAbsent,
  object,
  oneOf,
  optional,
  parseRecord,
  readJsonLines,
  record,
  refine,
  safeInteger,
  string,
  union,
  type Decoder,
  type JsonLinesErrorCode,
} from "../src/core/durable/jsonl.js";

function decodeError(field: string): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof RecordDecodeError, `expected a RecordDecodeError, got ${String(error)}`);
    assert.equal(error.field, field);
    return true;
  };
}

function linesError(
  code: JsonLinesErrorCode,
  lineNumber: number | null,
  offsetBytes: number,
): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof JsonLinesError, `expected a JsonLinesError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.lineNumber, lineNumber);
    assert.equal(error.offsetBytes, offsetBytes);
    return true;
  };
}

describe("int64String", () => {
  const signed = int64String();
  const unsigned = int64String({ signed: false });
  const valid: ReadonlyArray<[string, bigint]> = [
    ["0", 0n],
    ["-0", 0n],
    ["1", 1n],
    ["-1", -1n],
    ["9223372036854775807", int64Max],
    ["-9223372036854775808", int64Min],
    ["9223372036854775806", int64Max - 1n],
    ["-9223372036854775807", int64Min + 1n],
    // Leading zeros are accepted, as every earlier reader's pattern accepted them.
    ["007", 7n],
    ["-0009", -9n],
    ["00000000000000000000", 0n],
    ["0000000009223372036854775807", int64Max],
  ];
  for (const [text, expected] of valid) {
    it(`signed: accepts ${JSON.stringify(text)} as ${expected}`, () => {
      assert.equal(signed(text), expected);
    });
  }

  const invalid: readonly unknown[] = [
    "9223372036854775808",
    "-9223372036854775809",
    "10000000000000000000",
    "99999999999999999999",
    "18446744073709551615",
    "+1",
    "+0",
    "",
    "-",
    "--1",
    "- 1",
    " 1",
    "1 ",
    "1\n",
    "1e3",
    "1.0",
    "0x10",
    "1_000",
    "١",
    "１",
    1,
    0,
    null,
    undefined,
    true,
    [],
    {},
  ];
  for (const value of invalid) {
    it(`signed: refuses ${typeof value === "string" ? JSON.stringify(value) : String(value)}`, () => {
      assert.throws(() => signed(value), decodeError(""));
    });
  }

  const unsignedCases: ReadonlyArray<[string, bigint | "refused"]> = [
    ["0", 0n],
    ["9223372036854775807", int64Max],
    ["0009223372036854775807", int64Max],
    ["9223372036854775808", "refused"],
    ["-0", "refused"],
    ["-1", "refused"],
    ["-9223372036854775808", "refused"],
  ];
  for (const [text, expected] of unsignedCases) {
    it(`unsigned: ${expected === "refused" ? "refuses" : "accepts"} ${JSON.stringify(text)}`, () => {
      if (expected === "refused") assert.throws(() => unsigned(text), decodeError(""));
      else assert.equal(unsigned(text), expected);
    });
  }

  it("minorUnits is the non-negative int64", () => {
    assert.equal(minorUnits()("9223372036854775807"), int64Max);
    assert.throws(() => minorUnits()("-5"), decodeError(""));
    assert.throws(() => minorUnits()("9223372036854775808"), decodeError(""));
  });

  it("refuses a string of a million digits without converting it", () => {
    assert.throws(() => signed("9".repeat(1_000_000)), decodeError(""));
  });
});

describe("scalar decoders", () => {
  const cases: ReadonlyArray<[string, Decoder<unknown>, unknown, unknown]> = [
    ["string", string(), "", ""],
    ["string", string(), "a", "a"],
    ["string", string(), 1, "refused"],
    ["string", string(), null, "refused"],
    ["nonEmptyString", nonEmptyString(), "a", "a"],
    ["nonEmptyString", nonEmptyString(), "", "refused"],
    ["nonEmptyString", nonEmptyString(), undefined, "refused"],
    ["boolean", boolean(), false, false],
    ["boolean", boolean(), "true", "refused"],
    ["boolean", boolean(), 0, "refused"],
    ["safeInteger", safeInteger(), Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    ["safeInteger", safeInteger(), Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
    ["safeInteger", safeInteger(), Number.MAX_SAFE_INTEGER + 1, "refused"],
    ["safeInteger", safeInteger(), 1.5, "refused"],
    ["safeInteger", safeInteger(), Number.NaN, "refused"],
    ["safeInteger", safeInteger(), "1", "refused"],
    ["safeInteger min 0", safeInteger({ min: 0 }), 0, 0],
    ["safeInteger min 0", safeInteger({ min: 0 }), -1, "refused"],
    ["safeInteger max 9", safeInteger({ max: 9 }), 9, 9],
    ["safeInteger max 9", safeInteger({ max: 9 }), 10, "refused"],
    ["oneOf", oneOf(["debit", "credit"]), "credit", "credit"],
    ["oneOf", oneOf(["debit", "credit"]), "Credit", "refused"],
    ["oneOf", oneOf(["debit", "credit"]), undefined, "refused"],
    ["literal", literal("hold"), "hold", "hold"],
    ["literal", literal("hold"), "abort", "refused"],
    ["nullable", nullable(minorUnits()), null, null],
    ["nullable", nullable(minorUnits()), "5", 5n],
    ["nullable", nullable(minorUnits()), undefined, "refused"],
    ["optional", optional(minorUnits()), undefined, undefined],
    ["optional", optional(minorUnits()), "5", 5n],
    ["optional", optional(minorUnits()), null, "refused"],
    ["nullWhenAbsent", nullWhenAbsent(minorUnits()), undefined, null],
    ["nullWhenAbsent", nullWhenAbsent(minorUnits()), null, null],
    ["nullWhenAbsent", nullWhenAbsent(minorUnits()), "5", 5n],
    ["nullWhenAbsent", nullWhenAbsent(minorUnits()), "-5", "refused"],
    ["nullWhenAbsent", nullWhenAbsent(minorUnits()), 5, "refused"],
    ["refine", refine(string(), (value) => value.startsWith("p"), "must start with p"), "p1", "p1"],
    ["refine", refine(string(), (value) => value.startsWith("p"), "must start with p"), "q1", "refused"],
  ];
  for (const [name, decoder, value, expected] of cases) {
    it(`${name}: ${expected === "refused" ? "refuses" : "accepts"} ${typeof value === "string" ? JSON.stringify(value) : String(value)}`, () => {
      if (expected === "refused") assert.throws(() => decoder(value), decodeError(""));
      else assert.equal(decoder(value), expected);
    });
  }
});

describe("object, record, array, union", () => {
  const hold = object({
    op: literal("hold"),
    paymentId: nonEmptyString(),
    kind: oneOf(["debit", "credit"]),
    amountMinor: minorUnits(),
    expiresAtMs: safeInteger({ min: 0 }),
  });
  const commit = object({
    op: literal("commit"),
    paymentId: nonEmptyString(),
    balancesMinor: record(minorUnits()),
    atMs: safeInteger({ min: 0 }),
    begunAtMs: optional(safeInteger({ min: 0 })),
  });
  const entry = union("op", { hold, commit });
  const section = object({ holds: array(hold), journalGeneration: optional(safeInteger({ min: 0 })) });

  it("decodes each field, leaving out an absent optional one and ignoring unknown keys", () => {
    const decoded = commit({
      op: "commit",
      paymentId: "p1",
      balancesMinor: { alice: "100", "bob.x": "0" },
      atMs: 5,
      extra: [1],
    });
    assert.deepEqual(decoded, { op: "commit", paymentId: "p1", balancesMinor: { alice: 100n, "bob.x": 0n }, atMs: 5 });
    assert.equal("begunAtMs" in decoded, false);
    assert.deepEqual(commit({ op: "commit", paymentId: "p1", balancesMinor: {}, atMs: 5, begunAtMs: 3 }).begunAtMs, 3);
  });

  const refused: ReadonlyArray<[string, Decoder<unknown>, unknown, string, RegExp]> = [
    [
      "a map's value",
      commit,
      { op: "commit", paymentId: "p1", balancesMinor: { alice: "x" }, atMs: 5 },
      "balancesMinor.alice",
      /^balancesMinor\.alice must be an integer string from 0 to 9223372036854775807, got "x"$/,
    ],
    [
      "a map's odd key",
      commit,
      { op: "commit", paymentId: "p1", balancesMinor: { "a b": -1 }, atMs: 5 },
      'balancesMinor["a b"]',
      /^balancesMinor\["a b"\] must be an integer string/,
    ],
    [
      "a map's __proto__ key",
      commit,
      JSON.parse('{"op":"commit","paymentId":"p1","balancesMinor":{"__proto__":"1"},"atMs":5}'),
      "balancesMinor.__proto__",
      /must not be a key/,
    ],
    [
      "a map that is an array",
      commit,
      { op: "commit", paymentId: "p1", balancesMinor: [], atMs: 5 },
      "balancesMinor",
      /^balancesMinor must be an object, got an array$/,
    ],
    [
      "a missing field",
      hold,
      { op: "hold", paymentId: "p1", kind: "debit", expiresAtMs: 1 },
      "amountMinor",
      /^amountMinor must be an integer string .*, got nothing$/,
    ],
    [
      "a wrong optional",
      commit,
      { op: "commit", paymentId: "p1", balancesMinor: {}, atMs: 5, begunAtMs: -1 },
      "begunAtMs",
      /^begunAtMs must be an integer from 0 to /,
    ],
    ["not an object", hold, [1], "", /^the record must be an object, got an array$/],
    [
      "an item of an array",
      section,
      {
        holds: [
          { op: "hold", paymentId: "p1", kind: "debit", amountMinor: "1", expiresAtMs: 1 },
          { op: "hold", paymentId: "p2", kind: "both", amountMinor: "1", expiresAtMs: 1 },
        ],
      },
      "holds[1].kind",
      /^holds\[1\]\.kind must be one of "debit", "credit", got "both"$/,
    ],
    [
      "an unknown tag",
      entry,
      { op: "refund", paymentId: "p1" },
      "op",
      /^op must be one of "hold", "commit", got "refund"$/,
    ],
    ["a missing tag", entry, { paymentId: "p1" }, "op", /got nothing$/],
    ["a tag from Object's prototype", entry, { op: "toString" }, "op", /got "toString"$/],
    [
      "a field of the tagged variant",
      entry,
      { op: "hold", paymentId: "", kind: "debit", amountMinor: "1", expiresAtMs: 1 },
      "paymentId",
      /^paymentId must be a non-empty string, got ""$/,
    ],
  ];
  for (const [name, decoder, value, field, message] of refused) {
    it(`refuses ${name}, naming ${JSON.stringify(field)}`, () => {
      assert.throws(
        () => decoder(value),
        (error: unknown) => {
          decodeError(field)(error);
          assert.match((error as Error).message, message);
          return true;
        },
      );
    });
  }

  it("bounds a map's entries and an array's items when asked", () => {
    assert.throws(() => record(string(), { entriesMax: 1 })({ a: "", b: "" }), decodeError(""));
    assert.throws(() => array(string(), { lengthMax: 1 })(["", ""]), decodeError(""));
    assert.throws(() => record(string(), { key: nonEmptyString() })({ "": "" }), decodeError('[""]'));
  });

  it("decodeRecord and parseRecord return a refusal instead of throwing it", () => {
    assert.deepEqual(
      decodeRecord(hold, { op: "hold", paymentId: "p", kind: "debit", amountMinor: "2", expiresAtMs: 0 }),
      { ok: true, value: { op: "hold", paymentId: "p", kind: "debit", amountMinor: 2n, expiresAtMs: 0 } },
    );
    const bad = decodeRecord(hold, {});
    assert.equal(bad.ok, false);
    assert.equal(!bad.ok && bad.error.field, "op");
    const notJson = parseRecord(hold, "{");
    assert.equal(notJson.ok, false);
    assert.equal(!notJson.ok && notJson.error.field, "");
  });

  it("passes an error that is not a refusal through untouched", () => {
    const broken = object({
      a: () => {
        throw new TypeError("bug");
      },
    });
    assert.throws(() => broken({ a: 1 }), TypeError);
    assert.throws(() => decodeRecord(broken, { a: 1 }), TypeError);
  });
});

describe("object(): its builder, written out for the shape, and the loop used where code generation is disallowed", () => {
  // Both are run on each case; the loop in a child process started with code generation disallowed.
  const cases: ReadonlyArray<[string, unknown]> = [
    ["all fields", { a: "x", b: "y", c: 1, "a b": true, 'q"t': "q", é: null, d: 2 }],
    ["an optional field in the middle left out, order kept", { a: "x", c: 1, "a b": false, 'q"t': "q", é: "e", d: 2 }],
    ["the optional field at the end left out", { a: "x", b: "y", c: 1, "a b": true, 'q"t': "q", é: null }],
    ["unknown keys ignored", { z: 1, d: 2, é: null, 'q"t': "", "a b": true, c: 3, a: "", extra: [] }],
    ["a bad field after an optional one", { a: "x", c: "one", "a b": true, 'q"t': "q", é: null }],
    ["a bad field with an odd name", { a: "x", c: 1, "a b": "yes", 'q"t': "q", é: null }],
    ["a bad field with a quote in its name", { a: "x", c: 1, "a b": true, 'q"t': 5, é: null }],
    ["a required field missing", { a: "x", c: 1, "a b": true, é: null }],
    ["not an object", "x"],
  ];
  const decodeAll = `
    const shape = { a: J.string(), b: J.optional(J.string()), c: J.safeInteger(), "a b": J.boolean(), 'q"t': J.string(), "é": J.nullable(J.string()), d: J.optional(J.safeInteger()) };
    const decode = J.object(shape);
    const outcomes = cases.map(([, value]) => {
      try {
        const decoded = decode(value);
        return { keys: Object.keys(decoded), decoded };
      } catch (error) {
        return { field: error.field, message: error.message, name: error.constructor.name };
      }
    });`;
  const moduleUrl = new URL("../src/core/durable/jsonl.ts", import.meta.url).href;

  function run(codeGeneration: boolean): unknown[] {
    const script = `const J = await import(${JSON.stringify(moduleUrl)}); const cases = ${JSON.stringify(cases)}; ${decodeAll} process.stdout.write(JSON.stringify(outcomes));`;
    const flags = codeGeneration ? [] : ["--disallow-code-generation-from-strings"];
    const child = spawnSync(process.execPath, [...flags, "--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
      cwd: fileURLToPath(new URL("..", import.meta.url)),
    });
    assert.equal(child.status, 0, child.stderr);
    return JSON.parse(child.stdout) as unknown[];
  }

  it("decode alike, field by field, in the shape's order, naming the bad field", () => {
    const compiled = run(true);
    assert.deepEqual(run(false), compiled);
    assert.deepEqual(compiled, [
      {
        keys: ["a", "b", "c", "a b", 'q"t', "é", "d"],
        decoded: { a: "x", b: "y", c: 1, "a b": true, 'q"t': "q", é: null, d: 2 },
      },
      { keys: ["a", "c", "a b", 'q"t', "é", "d"], decoded: { a: "x", c: 1, "a b": false, 'q"t': "q", é: "e", d: 2 } },
      { keys: ["a", "b", "c", "a b", 'q"t', "é"], decoded: { a: "x", b: "y", c: 1, "a b": true, 'q"t': "q", é: null } },
      { keys: ["a", "c", "a b", 'q"t', "é", "d"], decoded: { a: "", c: 3, "a b": true, 'q"t': "", é: null, d: 2 } },
      { field: "c", message: 'c must be an integer, got "one"', name: "RecordDecodeError" },
      { field: '["a b"]', message: '["a b"] must be a boolean, got "yes"', name: "RecordDecodeError" },
      { field: '["q\\"t"]', message: '["q\\"t"] must be a string, got 5', name: "RecordDecodeError" },
      { field: '["q\\"t"]', message: '["q\\"t"] must be a string, got nothing', name: "RecordDecodeError" },
      { field: "", message: 'the record must be an object, got "x"', name: "RecordDecodeError" },
    ]);
  });

  it("decodes records of one type to objects of one shape (V8's hidden class)", () => {
    const decode = object({ a: string(), b: optional(string()), c: safeInteger() });
    const first = decode({ c: 1, a: "x", b: "y" });
    const second = decode({ b: "z", a: "w", c: 2, extra: 3 });
    assert.deepEqual(Object.keys(first), Object.keys(second));
  });

  it("refuses a field named __proto__ (a literal's would set the prototype)", () => {
    const shape: Record<string, Decoder<unknown>> = { a: string() };
    Object.defineProperty(shape, "__proto__", { value: string(), enumerable: true });
    assert.deepEqual(Object.keys(shape), ["a", "__proto__"]);
    assert.throws(() => object(shape), /no field may be named __proto__/);
  });
});

describe("fitsOneLine", () => {
  const cases: ReadonlyArray<[string, string, boolean]> = [
    ["an empty line", "", true],
    ["ASCII at the limit", "a".repeat(maxLineBytesDefault), true],
    ["ASCII one byte over", "a".repeat(maxLineBytesDefault + 1), false],
    ["3-byte characters at the limit", "€".repeat(maxLineBytesDefault / 4) + "a".repeat(maxLineBytesDefault / 4), true],
    [
      "3-byte characters one byte over",
      "€".repeat(maxLineBytesDefault / 4) + "a".repeat(maxLineBytesDefault / 4 + 1),
      false,
    ],
    ["4-byte characters (two UTF-16 units each) at the limit", "😀".repeat(maxLineBytesDefault / 4), true],
    ["4-byte characters one byte over", `${"😀".repeat(maxLineBytesDefault / 4)}a`, false],
    ["short lines of any characters", "é€😀".repeat(1000), true],
  ];
  for (const [name, text, fits] of cases) {
    it(`${fits ? "passes" : "refuses"} ${name}`, () => {
      assert.equal(Buffer.byteLength(text) <= maxLineBytesDefault, fits, "the case is what it says");
      assert.equal(fitsOneLine(text), fits);
    });
  }

  it("takes another bound", () => {
    assert.equal(fitsOneLine("€€", 6), true);
    assert.equal(fitsOneLine("€€", 5), false);
  });
});

const line = object({ n: safeInteger() });
type Outcome =
  | { lines: number[]; offsets: Array<[number, number]>; completeBytes: number; tornBytes: number }
  | { code: JsonLinesErrorCode; lineNumber: number | null; offsetBytes: number };

describe("readJsonLines and decodeJsonLines", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-jsonl-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function readAll(path: string, options: { fromBytes?: number; maxLineBytes?: number } = {}) {
    const lines: number[] = [];
    const offsets: Array<[number, number]> = [];
    const wheres: string[] = [];
    const read = await readJsonLines(
      path,
      line,
      (entry, offsetBytes, endBytes, where) => {
        lines.push(entry.n);
        offsets.push([offsetBytes, endBytes]);
        wheres.push(where);
      },
      options,
    );
    return { ...read, lines, offsets, wheres, count: read.lines };
  }

  // Each content is read whole by both readers, with the exact outcome expected.
  const table: ReadonlyArray<[string, string | Buffer, Outcome]> = [
    ["an empty file", "", { lines: [], offsets: [], completeBytes: 0, tornBytes: 0 }],
    ["one line", '{"n":1}\n', { lines: [1], offsets: [[0, 8]], completeBytes: 8, tornBytes: 0 }],
    [
      "three lines",
      '{"n":1}\n{"n":22}\n{"n":3}\n',
      {
        lines: [1, 22, 3],
        offsets: [
          [0, 8],
          [8, 17],
          [17, 25],
        ],
        completeBytes: 25,
        tornBytes: 0,
      },
    ],
    ["a torn last line", '{"n":1}\n{"n":', { lines: [1], offsets: [[0, 8]], completeBytes: 8, tornBytes: 5 }],
    [
      "a torn last line that would be refused whole",
      '{"n":1}\n{"n":"x"}',
      { lines: [1], offsets: [[0, 8]], completeBytes: 8, tornBytes: 9 },
    ],
    ["only a torn line", '{"n"', { lines: [], offsets: [], completeBytes: 0, tornBytes: 4 }],
    [
      "multi-byte characters (offsets in bytes)",
      '{"n":1,"s":"é€"}\n{"n":2}\n',
      {
        lines: [1, 2],
        offsets: [
          [0, 20],
          [20, 28],
        ],
        completeBytes: 28,
        tornBytes: 0,
      },
    ],
    [
      "a CRLF line (JSON allows the \\r; offsets count it)",
      '{"n":1}\r\n{"n":2}\n',
      {
        lines: [1, 2],
        offsets: [
          [0, 9],
          [9, 17],
        ],
        completeBytes: 17,
        tornBytes: 0,
      },
    ],
    [
      "a bad record in the middle",
      '{"n":1}\n{"n":"x"}\n{"n":3}\n',
      { code: "JSONL_BAD_LINE", lineNumber: 2, offsetBytes: 8 },
    ],
    ["not JSON in the middle", '{"n":1}\n{"n":\n{"n":3}\n', { code: "JSONL_BAD_LINE", lineNumber: 2, offsetBytes: 8 }],
    ["an empty line in the middle", '{"n":1}\n\n{"n":3}\n', { code: "JSONL_BAD_LINE", lineNumber: 2, offsetBytes: 8 }],
    ["two records on one line", '{"n":1}{"n":2}\n', { code: "JSONL_BAD_LINE", lineNumber: 1, offsetBytes: 0 }],
    ["a bad first line", 'null\n{"n":2}\n', { code: "JSONL_BAD_LINE", lineNumber: 1, offsetBytes: 0 }],
    ["a bad complete last line", '{"n":1}\n{"n":1.5}\n', { code: "JSONL_BAD_LINE", lineNumber: 2, offsetBytes: 8 }],
    [
      "invalid UTF-8",
      Buffer.concat([Buffer.from('{"n":1}\n{"n":2,"s":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]),
      { code: "JSONL_BAD_LINE", lineNumber: 2, offsetBytes: 8 },
    ],
  ];

  for (const [name, content, expected] of table) {
    it(`readJsonLines: ${name}`, async () => {
      const path = join(dir, `case-${name.replace(/[^a-z]+/gi, "-")}.jsonl`);
      await writeFile(path, content);
      if ("code" in expected) {
        await assert.rejects(readAll(path), linesError(expected.code, expected.lineNumber, expected.offsetBytes));
        return;
      }
      const read = await readAll(path);
      assert.deepEqual(
        { lines: read.lines, offsets: read.offsets, completeBytes: read.completeBytes, tornBytes: read.tornBytes },
        expected,
      );
      assert.equal(read.count, expected.lines.length);
      assert.deepEqual(
        read.wheres,
        expected.lines.map((_, index) => `${path}:${index + 1}`),
      );
    });
    it(`decodeJsonLines: ${name}`, () => {
      if ("code" in expected) {
        assert.throws(
          () => decodeJsonLines(content, "f.jsonl", line),
          linesError(expected.code, expected.lineNumber, expected.offsetBytes),
        );
        return;
      }
      const read = decodeJsonLines(content, "f.jsonl", line);
      assert.deepEqual(
        read.entries.map((entry) => entry.n),
        expected.lines,
      );
      assert.deepEqual(
        { lines: read.lines, completeBytes: read.completeBytes, tornBytes: read.tornBytes },
        { lines: expected.lines.length, completeBytes: expected.completeBytes, tornBytes: expected.tornBytes },
      );
    });
  }

  it("names the file and the line, says to refuse to start, and keeps the field's error as the cause", async () => {
    const path = join(dir, "middle.jsonl");
    await writeFile(path, '{"n":1}\n{"n":"x"}\n{"n":3}\n');
    const error = await readAll(path).then(
      () => assert.fail("read a bad line"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof JsonLinesError);
    assert.equal(error.where, `${path}:2`);
    assert.equal(error.path, path);
    assert.ok(error.cause instanceof RecordDecodeError);
    assert.equal(error.cause.field, "n");
    // The operator reads this line: the file, the line, the field, and what to do.
    assert.equal(error.message, `${path}:2: n must be an integer, got "x"; refusing to start, fix or restore the file`);
  });

  it("a missing file has no lines", async () => {
    assert.deepEqual(await readJsonLines(join(dir, "missing.jsonl"), line, () => assert.fail("no entry")), {
      lines: 0,
      completeBytes: 0,
      tornBytes: 0,
    });
  });

  describe("from a byte mid-file", () => {
    const content = '{"n":1}\n{"n":22}\n{"n":3}\n{"n":';
    let path: string;
    before(async () => {
      path = join(dir, "mid.jsonl");
      await writeFile(path, content);
    });

    const cases: ReadonlyArray<[number, Outcome]> = [
      [
        8,
        {
          lines: [22, 3],
          offsets: [
            [8, 17],
            [17, 25],
          ],
          completeBytes: 25,
          tornBytes: 5,
        },
      ],
      [17, { lines: [3], offsets: [[17, 25]], completeBytes: 25, tornBytes: 5 }],
      [25, { lines: [], offsets: [], completeBytes: 25, tornBytes: 5 }],
      // The end of a torn line is not the start of one.
      [30, { code: "JSONL_BAD_START", lineNumber: null, offsetBytes: 30 }],
      [9, { code: "JSONL_BAD_START", lineNumber: null, offsetBytes: 9 }],
      [28, { code: "JSONL_BAD_START", lineNumber: null, offsetBytes: 28 }],
      [31, { code: "JSONL_BAD_START", lineNumber: null, offsetBytes: 31 }],
    ];
    for (const [fromBytes, expected] of cases) {
      it(`from byte ${fromBytes}`, async () => {
        if ("code" in expected) {
          await assert.rejects(
            readAll(path, { fromBytes }),
            linesError(expected.code, expected.lineNumber, expected.offsetBytes),
          );
          return;
        }
        const read = await readAll(path, { fromBytes });
        assert.deepEqual(
          { lines: read.lines, offsets: read.offsets, completeBytes: read.completeBytes, tornBytes: read.tornBytes },
          expected,
        );
        assert.deepEqual(
          read.wheres,
          expected.offsets.map(([offset]) => `${path}: the line at byte ${offset}`),
        );
      });
    }

    it("names a bad line by its byte, not a line number", async () => {
      const bad = join(dir, "mid-bad.jsonl");
      await writeFile(bad, '{"n":1}\n{"n":2}\n{"n":false}\n');
      await assert.rejects(readAll(bad, { fromBytes: 8 }), (error: unknown) => {
        linesError("JSONL_BAD_LINE", null, 16)(error);
        assert.equal((error as JsonLinesError).where, `${bad}: the line at byte 16`);
        return true;
      });
    });

    it("refuses to start beyond the end of a missing file", async () => {
      await assert.rejects(
        readAll(join(dir, "missing.jsonl"), { fromBytes: 8 }),
        linesError("JSONL_BAD_START", null, 8),
      );
    });
  });

  describe("the bound on a line", () => {
    const exactly16 = '{"n":1,"s":"ab"}';
    const cases: ReadonlyArray<[string, string, Outcome]> = [
      [
        "a line of exactly the limit",
        `${exactly16}\n`,
        { lines: [1], offsets: [[0, 17]], completeBytes: 17, tornBytes: 0 },
      ],
      [
        "a line one byte over",
        `{"n":1}\n{"n":1,"s":"abc"}\n`,
        { code: "JSONL_LINE_TOO_LONG", lineNumber: 2, offsetBytes: 8 },
      ],
      [
        "a torn line of exactly the limit",
        `{"n":1}\n${exactly16}`,
        { lines: [1], offsets: [[0, 8]], completeBytes: 8, tornBytes: 16 },
      ],
      // No writer makes a line that long, so no torn append of one is that long either.
      [
        "a torn line over the limit",
        `{"n":1}\n${exactly16}x`,
        { code: "JSONL_LINE_TOO_LONG", lineNumber: 2, offsetBytes: 8 },
      ],
    ];
    for (const [name, content, expected] of cases) {
      it(`maxLineBytes 16: ${name}`, async () => {
        const path = join(dir, `bound-${name.replace(/[^a-z]+/gi, "-")}.jsonl`);
        await writeFile(path, content);
        if ("code" in expected) {
          await assert.rejects(
            readAll(path, { maxLineBytes: 16 }),
            linesError(expected.code, expected.lineNumber, expected.offsetBytes),
          );
          assert.throws(
            () => decodeJsonLines(content, path, line, { maxLineBytes: 16 }),
            linesError(expected.code, expected.lineNumber, expected.offsetBytes),
          );
          return;
        }
        const read = await readAll(path, { maxLineBytes: 16 });
        assert.deepEqual(
          { lines: read.lines, offsets: read.offsets, completeBytes: read.completeBytes, tornBytes: read.tornBytes },
          expected,
        );
      });
    }

    it("the default limit is 1 MiB", async () => {
      const path = join(dir, "long.jsonl");
      const atLimit = `{"n":1,"s":"${"x".repeat(2 ** 20 - 14)}"}`;
      assert.equal(Buffer.byteLength(atLimit), 2 ** 20);
      await writeFile(path, `${atLimit}\n`);
      assert.equal((await readAll(path)).count, 1);
      const overLimit = `{"n":1,"s":"${"x".repeat(2 ** 20 - 13)}"}`;
      await writeFile(path, `${overLimit}\n{"n":2}\n`);
      await assert.rejects(readAll(path), linesError("JSONL_LINE_TOO_LONG", 1, 0));
    });
  });

  it("reads lines that straddle its chunks, characters split between chunks, and lines longer than a chunk", async () => {
    const path = join(dir, "big.jsonl");
    const parts: string[] = [];
    for (let index = 0; index < 40_000; index += 1)
      parts.push(`${JSON.stringify({ n: index, s: "é€😀".repeat(index % 50) })}\n`);
    parts.push(`${JSON.stringify({ n: -1, s: "€".repeat(600_000) })}\n`);
    for (let index = 40_000; index < 60_000; index += 1) parts.push(`${JSON.stringify({ n: index, s: "a" })}\n`);
    const content = Buffer.from(parts.join(""));
    await writeFile(path, content);
    const read = await readAll(path, { maxLineBytes: 2 * 2 ** 20 });
    const whole = decodeJsonLines(content, path, line, { maxLineBytes: 2 * 2 ** 20 });
    assert.equal(read.count, 60_001);
    assert.deepEqual(
      read.lines,
      whole.entries.map((entry) => entry.n),
    );
    assert.equal(read.completeBytes, content.length);
    assert.equal(read.tornBytes, 0);
    let expectedOffset = 0;
    read.offsets.forEach(([offsetBytes, endBytes], index) => {
      assert.equal(offsetBytes, expectedOffset);
      assert.equal(content[endBytes - 1], 0x0a, `line ${index + 1} ends at a newline`);
      expectedOffset = endBytes;
    });
  });

  it("awaits an entry's promise before the next entry, and lets its error through unchanged", async () => {
    const path = join(dir, "async.jsonl");
    await writeFile(path, '{"n":1}\n{"n":2}\n{"n":3}\n');
    const seen: number[] = [];
    await readJsonLines(path, line, async (entry) => {
      await new Promise((resolve) => setTimeout(resolve, 3 - entry.n));
      seen.push(entry.n);
    });
    assert.deepEqual(seen, [1, 2, 3]);
    const mine = new Error("the caller's refusal");
    await assert.rejects(
      readJsonLines(path, line, (entry) => {
        if (entry.n === 2) throw mine;
      }),
      (error) => error === mine,
    );
  });

  it("refuses a bad line in a file of many chunks, closing the file", async () => {
    const path = join(dir, "big-bad.jsonl");
    const good = `${JSON.stringify({ n: 1, s: "x".repeat(100) })}\n`;
    await writeFile(path, `${good.repeat(30_000)}{"n":"bad"}\n${good.repeat(10_000)}`);
    await assert.rejects(readAll(path), linesError("JSONL_BAD_LINE", 30_001, good.length * 30_000));
  });
});
