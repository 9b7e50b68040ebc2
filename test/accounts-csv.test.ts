// Specification of src/core/accounts-csv.ts: the `username,balance,password,bank` accounts file.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile, access } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AccountsFileError,
  accountsHeader,
  formatBalance,
  loadBankAccounts,
  parseAccountsCsv,
  rewriteBankRows,
  serializeAccountsCsv,
  type AccountRow,
} from "../src/core/bank/store/file/accounts-csv.js";
import type { Account } from "../src/core/domain/ledger.js";
import { balanceMinorMax } from "../src/core/domain/money.js";
import { hashPassword, isPasswordHash, verifyPassword } from "../src/core/bank/passwords.js";

const path = "/data/server/dummydata.csv";

/** The file is rejected with an AccountsFileError whose message starts with `path:LINE:`. */
function rejectedAtLine(line: number): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof AccountsFileError, `expected an AccountsFileError, got ${String(error)}`);
    assert.ok(
      error.message.startsWith(`${path}:${line}: `),
      `expected the prefix ${path}:${line}: in ${JSON.stringify(error.message)}`,
    );
    return true;
  };
}

const seedRows: AccountRow[] = [
  { username: "alice", balanceMinor: 100_000n, password: "alice123", bank: "SBI" },
  { username: "bob", balanceMinor: 50_000n, password: "bob123", bank: "HDFC" },
  { username: "carol", balanceMinor: 75_000n, password: "carol123", bank: "SBI" },
  { username: "dave", balanceMinor: 25_050n, password: "dave123", bank: "HDFC" },
];
const seedText = `${accountsHeader}\nalice,1000,alice123,SBI\nbob,500,bob123,HDFC\ncarol,750,carol123,SBI\ndave,250.50,dave123,HDFC\n`;

describe("parseAccountsCsv", () => {
  it("parses the seed file with its header", () => {
    assert.deepEqual(parseAccountsCsv(seedText, path), seedRows);
  });

  it("treats the header as optional", () => {
    const body = seedText.split("\n").slice(1).join("\n");
    assert.deepEqual(parseAccountsCsv(body, path), seedRows);
  });

  it("recognizes the header regardless of case and spaces", () => {
    const text = "Username, Balance, Password, Bank\nalice,1000,alice123,SBI\n";
    assert.deepEqual(parseAccountsCsv(text, path), [seedRows[0]]);
  });

  it("accepts CRLF line endings and a missing final newline", () => {
    assert.deepEqual(parseAccountsCsv(seedText.replace(/\n/g, "\r\n"), path), seedRows);
    assert.deepEqual(parseAccountsCsv(seedText.trimEnd(), path), seedRows);
  });

  it("trims spaces around fields", () => {
    assert.deepEqual(parseAccountsCsv(" alice , 12.5 , pw , SBI \n", path), [
      { username: "alice", balanceMinor: 1250n, password: "pw", bank: "SBI" },
    ]);
  });

  it("returns no rows for an empty file or a header alone", () => {
    assert.deepEqual(parseAccountsCsv("", path), []);
    assert.deepEqual(parseAccountsCsv(`${accountsHeader}\n`, path), []);
  });

  const balances: ReadonlyArray<[string, bigint]> = [
    ["0", 0n],
    ["0.01", 1n],
    ["7", 700n],
    ["1000", 100_000n],
    ["12.5", 1250n],
    ["12.50", 1250n],
    ["250.05", 25_005n],
    ["10000000000000", balanceMinorMax],
  ];
  for (const [text, balanceMinor] of balances) {
    it(`reads the balance ${JSON.stringify(text)} as ${balanceMinor} minor units`, () => {
      assert.equal(parseAccountsCsv(`alice,${text},pw,SBI\n`, path)[0]?.balanceMinor, balanceMinor);
    });
  }

  it("allows the same username at two banks", () => {
    const rows = parseAccountsCsv("alice,1,pw,SBI\nalice,2,pw,HDFC\n", path);
    assert.deepEqual(
      rows.map((row) => [row.username, row.bank, row.balanceMinor]),
      [
        ["alice", "SBI", 100n],
        ["alice", "HDFC", 200n],
      ],
    );
  });

  const malformed: ReadonlyArray<[string, string]> = [
    ["three fields", "alice,1000,SBI"],
    ["five fields", "alice,1000,pw,SBI,extra"],
    ["one field", "alice"],
    ["negative balance", "alice,-5,pw,SBI"],
    ["non-numeric balance", "alice,ten,pw,SBI"],
    ["empty balance", "alice,,pw,SBI"],
    ["exponent balance", "alice,1e3,pw,SBI"],
    ["three decimal places", "alice,1.234,pw,SBI"],
    ["balance above the limit", "alice,10000000000000.01,pw,SBI"],
    ["balance of 19 digits", "alice,1000000000000000000,pw,SBI"],
    ["bank name with an underscore", "alice,1,pw,S_BI"],
    ["bank name with a leading hyphen", "alice,1,pw,-SBI"],
    ["bank name with a space", "alice,1,pw,S BI"],
    ["empty bank name", "alice,1,pw,"],
    ["bank name longer than 32", `alice,1,pw,${"B".repeat(33)}`],
    ["empty username", ",1,pw,SBI"],
    ["username starting with a dot", ".alice,1,pw,SBI"],
    ["empty password", "alice,1,,SBI"],
    ["password with a space", "alice,1,p w,SBI"],
    ["password with a quote", 'alice,1,p"w,SBI'],
  ];
  for (const [what, row] of malformed) {
    it(`rejects a row with ${what}, naming its line`, () => {
      const text = `${accountsHeader}\nbob,500,bob123,HDFC\n${row}\ncarol,750,carol123,SBI\n`;
      assert.throws(() => parseAccountsCsv(text, path), rejectedAtLine(3));
    });
  }

  it("numbers lines from 1 when there is no header", () => {
    assert.throws(() => parseAccountsCsv("alice,-1,pw,SBI\n", path), rejectedAtLine(1));
  });

  // Blank lines are skipped wherever they are; the line numbers of what follows them stay the file's own.
  const blank: ReadonlyArray<[string, string]> = [
    ["an empty line between rows", `${accountsHeader}\nalice,1000,alice123,SBI\n\nbob,500,bob123,HDFC\n`],
    ["several empty lines at the end", `${accountsHeader}\nalice,1000,alice123,SBI\nbob,500,bob123,HDFC\n\n\n`],
    ["a whitespace-only line", `${accountsHeader}\nalice,1000,alice123,SBI\n  \t \nbob,500,bob123,HDFC\n`],
    ["CRLF blank lines", `${accountsHeader}\r\n\r\nalice,1000,alice123,SBI\r\nbob,500,bob123,HDFC\r\n\r\n`],
    ["blank lines before the header", `\n\n${accountsHeader}\nalice,1000,alice123,SBI\nbob,500,bob123,HDFC\n`],
    ["blank lines and no final newline", `${accountsHeader}\nalice,1000,alice123,SBI\n\n\nbob,500,bob123,HDFC`],
  ];
  for (const [what, text] of blank) {
    it(`skips ${what}`, () => {
      assert.deepEqual(parseAccountsCsv(text, path), seedRows.slice(0, 2));
    });
  }

  it("returns no rows for a file of blank lines", () => {
    assert.deepEqual(parseAccountsCsv("\n \n\n", path), []);
  });

  it("names a malformed row's own line after skipped blank lines", () => {
    const text = `${accountsHeader}\n\nalice,1000,alice123,SBI\n\n\nbob,-1,bob123,HDFC\n\n`;
    assert.throws(() => parseAccountsCsv(text, path), rejectedAtLine(6));
  });

  it("treats a header after the first non-blank line as a malformed row", () => {
    assert.throws(() => parseAccountsCsv(`\nalice,1,pw,SBI\n\n${accountsHeader}\n`, path), rejectedAtLine(4));
  });

  it("rejects a duplicate user at the same bank, naming the second occurrence", () => {
    const text = `${accountsHeader}\nalice,1,pw,SBI\nbob,1,pw,SBI\nalice,2,other,SBI\n`;
    assert.throws(() => parseAccountsCsv(text, path), rejectedAtLine(4));
  });

  it("treats a header after the first line as a malformed row", () => {
    assert.throws(() => parseAccountsCsv(`alice,1,pw,SBI\n${accountsHeader}\n`, path), rejectedAtLine(2));
  });
});

describe("formatBalance and serializeAccountsCsv", () => {
  const table: ReadonlyArray<[bigint, string]> = [
    [0n, "0"],
    [1n, "0.01"],
    [10n, "0.10"],
    [99n, "0.99"],
    [100n, "1"],
    [1205n, "12.05"],
    [1250n, "12.50"],
    [100_000n, "1000"],
    [balanceMinorMax, "10000000000000"],
  ];
  for (const [balanceMinor, text] of table) {
    it(`formats ${balanceMinor} as ${JSON.stringify(text)}`, () => {
      assert.equal(formatBalance(balanceMinor), text);
    });
  }

  it("writes the header, one row per line and a final newline", () => {
    assert.equal(serializeAccountsCsv(seedRows), seedText);
    assert.equal(serializeAccountsCsv([]), `${accountsHeader}\n`);
  });

  it("round-trips rows through text and back", () => {
    const rows: AccountRow[] = [
      ...seedRows,
      {
        username: "erin",
        balanceMinor: 1n,
        password: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        bank: "SBI",
      },
      { username: "frank", balanceMinor: 0n, password: "pw", bank: "AXIS" },
      { username: "alice", balanceMinor: balanceMinorMax, password: "pw", bank: "AXIS" },
    ];
    assert.deepEqual(parseAccountsCsv(serializeAccountsCsv(rows), path), rows);
  });

  it("round-trips canonical text unchanged", () => {
    assert.equal(serializeAccountsCsv(parseAccountsCsv(seedText, path)), seedText);
  });
});

describe("rewriteBankRows and loadBankAccounts (on disk)", () => {
  let root = "";
  let fileCount = 0;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "paynet-accounts-csv-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function seedFile(text: string): Promise<string> {
    fileCount += 1;
    const file = join(root, `accounts-${fileCount}.csv`);
    await writeFile(file, text, "utf8");
    return file;
  }

  async function rowsOnDisk(file: string): Promise<AccountRow[]> {
    return parseAccountsCsv(await readFile(file, "utf8"), file);
  }

  it("rewriteBankRows changes only the named bank's rows", async () => {
    const file = await seedFile(
      `${accountsHeader}\nalice,1000,alice123,SBI\nalice,300,alice-hdfc,HDFC\nbob,500,bob123,HDFC\ncarol,750,carol123,SBI\n`,
    );
    const accounts = new Map<string, Account>([
      ["alice", { balanceMinor: 12_345n, password: "new-alice" }],
      ["ghost", { balanceMinor: 1n, password: "ghost" }], // not a row of the file: never added
    ]);
    await rewriteBankRows(file, "SBI", accounts);
    assert.deepEqual(await rowsOnDisk(file), [
      { username: "alice", balanceMinor: 12_345n, password: "new-alice", bank: "SBI" },
      { username: "alice", balanceMinor: 30_000n, password: "alice-hdfc", bank: "HDFC" },
      { username: "bob", balanceMinor: 50_000n, password: "bob123", bank: "HDFC" },
      { username: "carol", balanceMinor: 75_000n, password: "carol123", bank: "SBI" },
    ]);
  });

  it("rewriteBankRows keeps row order and writes the canonical form", async () => {
    const file = await seedFile("alice,1000,alice123,SBI\nbob,500,bob123,HDFC\n");
    await rewriteBankRows(file, "HDFC", new Map([["bob", { balanceMinor: 50_001n, password: "bob123" }]]));
    assert.equal(await readFile(file, "utf8"), `${accountsHeader}\nalice,1000,alice123,SBI\nbob,500.01,bob123,HDFC\n`);
  });

  // A canonical file is rewritten in place byte by byte; any other goes through the parser. Either way the
  // file then reads as the parser's reading of the old one with the rows replaced, header first.
  const shapes: Array<[string, string]> = [
    ["a canonical file", `${accountsHeader}\nalice,1000,alice123,SBI\nbob,0.5,bob123,HDFC\ncarol,10.25,c$1$x,SBI\n`],
    ["no final newline after a replaced row", `${accountsHeader}\nbob,500,bob123,HDFC\nalice,1000,alice123,SBI`],
    ["no final newline after a kept row", `${accountsHeader}\nalice,1000,alice123,SBI\nbob,500,bob123,HDFC`],
    ["no header", "alice,1000,alice123,SBI\nbob,500,bob123,HDFC\n"],
    ["a header in another case and spacing", "Username, Balance,Password , BANK\nalice,1000,alice123,SBI\n"],
    ["CRLF line endings", `${accountsHeader}\r\nalice,1000,alice123,SBI\r\nbob,500,bob123,HDFC\r\n`],
    ["spaces around fields", `${accountsHeader}\nalice , 1000 ,alice123, SBI\nbob,500,bob123,HDFC\n`],
    ["a non-ASCII password", `${accountsHeader}\nalice,1000,pässword,SBI\nbob,500,bob123,HDFC\n`],
    [
      "the same user at a bank whose name ends like ours",
      `${accountsHeader}\nalice,1000,alice123,XSBI\nalice,7,a,SBI\nalice,8,b,SBI-2\n`,
    ],
    ["a 64-character username", `${accountsHeader}\n${"a".repeat(64)},1,p,SBI\nalice,2,q,SBI\n`],
    ["the header alone", accountsHeader],
    ["blank lines between and after rows", `${accountsHeader}\nalice,1000,alice123,SBI\n\n  \nbob,500,bob123,HDFC\n\n`],
    ["an empty file", ""],
  ];
  for (const [shape, text] of shapes) {
    it(`rewriteBankRows writes the parser's reading of a file with ${shape}, with the rows replaced`, async () => {
      const file = await seedFile(text);
      const accounts = new Map<string, Account>([
        ["alice", { balanceMinor: 4_200n, password: "new-alice" }],
        [`${"a".repeat(64)}`, { balanceMinor: 9n, password: "long" }],
      ]);
      const expected = parseAccountsCsv(text, file).map((row) => {
        const account = row.bank === "SBI" ? accounts.get(row.username) : undefined;
        return account === undefined ? row : { ...row, balanceMinor: account.balanceMinor, password: account.password };
      });
      await rewriteBankRows(file, "SBI", accounts);
      const written = await readFile(file, "utf8");
      assert.deepEqual(parseAccountsCsv(written, file), expected);
      assert.ok(written.startsWith(`${accountsHeader}\n`) && written.endsWith("\n"), JSON.stringify(written));
    });
  }

  it("rewriteBankRows keeps every other line of a canonical file byte for byte", async () => {
    const file = await seedFile(
      `${accountsHeader}\nbob,0.5,bob123,HDFC\nalice,1000,alice123,SBI\ncarol,7.00,c$1$x,SBI\n`,
    );
    await rewriteBankRows(file, "SBI", new Map([["alice", { balanceMinor: 1n, password: "p" }]]));
    assert.equal(
      await readFile(file, "utf8"),
      `${accountsHeader}\nbob,0.5,bob123,HDFC\nalice,0.01,p,SBI\ncarol,7.00,c$1$x,SBI\n`,
    );
  });

  it("rewriteBankRows refuses a malformed file and leaves it as it was", async () => {
    const text = "alice,1000,alice123,SBI\nbob,-1,bob123,HDFC\n";
    const file = await seedFile(text);
    await assert.rejects(
      rewriteBankRows(file, "SBI", new Map([["alice", { balanceMinor: 1n, password: "x" }]])),
      (error) => {
        assert.ok(error instanceof AccountsFileError);
        assert.ok(error.message.startsWith(`${file}:2: `));
        return true;
      },
    );
    assert.equal(await readFile(file, "utf8"), text);
  });

  it("loadBankAccounts migrates that bank's plaintext passwords to scrypt hashes and leaves other banks untouched", async () => {
    const preHashed = await hashPassword("erin-pw");
    const file = await seedFile(`${seedText}erin,5,${preHashed},SBI\nalice,1,alice-hdfc,HDFC\n`);
    const hashed: string[] = [];
    const countingHash = (password: string) => {
      hashed.push(password);
      return hashPassword(password);
    };

    const accounts = await loadBankAccounts(file, "SBI", countingHash, isPasswordHash);

    assert.deepEqual(hashed.sort(), ["alice123", "carol123"], "only SBI's plaintext passwords are hashed");
    assert.deepEqual([...accounts.keys()], ["alice", "carol", "erin"]);
    assert.equal(accounts.get("alice")?.balanceMinor, 100_000n);
    assert.equal(accounts.get("carol")?.balanceMinor, 75_000n);
    assert.equal(accounts.get("erin")?.balanceMinor, 500n);
    assert.equal(accounts.get("erin")?.password, preHashed, "an existing hash is kept as it is");
    for (const [username, plain] of [
      ["alice", "alice123"],
      ["carol", "carol123"],
    ] as const) {
      const stored = accounts.get(username)?.password ?? "";
      assert.equal(isPasswordHash(stored), true);
      assert.equal(await verifyPassword(plain, stored), true);
    }

    const onDisk = await rowsOnDisk(file);
    assert.deepEqual(
      onDisk.map((row) => [row.username, row.bank, row.balanceMinor]),
      [
        ["alice", "SBI", 100_000n],
        ["bob", "HDFC", 50_000n],
        ["carol", "SBI", 75_000n],
        ["dave", "HDFC", 25_050n],
        ["erin", "SBI", 500n],
        ["alice", "HDFC", 100n],
      ],
    );
    for (const row of onDisk) {
      if (row.bank === "SBI")
        assert.equal(
          row.password,
          accounts.get(row.username)?.password,
          `${row.username}@SBI on disk matches the loaded hash`,
        );
    }
    assert.deepEqual(
      onDisk.filter((row) => row.bank === "HDFC").map((row) => row.password),
      ["bob123", "dave123", "alice-hdfc"],
      "other banks' plaintext passwords are left for their own bank to migrate",
    );
  });

  it("loadBankAccounts leaves an already migrated file byte for byte as it was", async () => {
    const file = await seedFile(seedText);
    await loadBankAccounts(file, "HDFC", hashPassword, isPasswordHash);
    const migrated = await readFile(file, "utf8");
    const hashed: string[] = [];
    const again = await loadBankAccounts(
      file,
      "HDFC",
      (password) => {
        hashed.push(password);
        return hashPassword(password);
      },
      isPasswordHash,
    );
    assert.deepEqual(hashed, []);
    assert.equal(await readFile(file, "utf8"), migrated);
    assert.deepEqual([...again.keys()], ["bob", "dave"]);
  });

  it("loadBankAccounts of a bank without rows returns no accounts and does not rewrite the file", async () => {
    const text = "alice,1000,alice123,SBI\n"; // no header: a rewrite would add one
    const file = await seedFile(text);
    const accounts = await loadBankAccounts(file, "AXIS", hashPassword, isPasswordHash);
    assert.equal(accounts.size, 0);
    assert.equal(await readFile(file, "utf8"), text);
  });

  it("releases the file lock after each operation", async () => {
    const file = await seedFile(seedText);
    await loadBankAccounts(file, "SBI", hashPassword, isPasswordHash);
    await rewriteBankRows(file, "SBI", new Map());
    await assert.rejects(access(`${file}.lock`), { code: "ENOENT" });
  });
});
