// A bank's accounts in and out of PostgreSQL: the one-time import of the seed (server/dummydata.csv, read by the
// caller) into an empty schema, and the export back to the seed's CSV row format (`paynet db export --bank B`).
import {
  inTransaction,
  DatabaseError,
  type Database,
  type DatabaseClient,
} from "../../../durable/postgres/database.js";
import { balanceMinorMax } from "../../../domain/money.js";
import { validateUsername } from "../../../domain/validate.js";
import type { Account } from "../../../domain/ledger.js";
import { serializeAccountsCsv, type AccountRow } from "../file/accounts-csv.js";
import { bankSchemaName } from "./bank-schema.js";
import { readMinor } from "./ledger-rows.js";

/** Rows per INSERT of the import: one round trip each, with arrays well under the protocol's limits. */
const importRowsPerStatement = 10_000;

export interface AccountImport {
  bank: string;
  schema: string;
  initialAccounts: () => Promise<Map<string, Account>>;
  hashPassword: (password: string) => Promise<string>;
  isPasswordHash: (stored: string) => boolean;
}

/**
 * Imports the initial accounts if the schema has never had them: in one transaction that locks the meta row,
 * inserts every account and marks the import done, so that a crash mid-import leaves nothing and the next open
 * imports again, and two stores opening an empty schema at once import once (the second finds it marked).
 * Plaintext passwords are hashed first, outside the transaction (scrypt is slow). Returns whether it imported.
 */
export async function importInitialAccounts(database: Database, options: AccountImport): Promise<boolean> {
  const { schema } = options;
  if (await accountsImported(database, schema)) return false;
  const accounts = await options.initialAccounts();
  const rows: Array<[string, Account]> = [];
  for (const [username, account] of accounts) {
    validateUsername(username);
    if (account.balanceMinor < 0n || account.balanceMinor > balanceMinorMax)
      throw new DatabaseError(`initial account ${username}: balance ${account.balanceMinor} out of range`);
    const password = options.isPasswordHash(account.password)
      ? account.password
      : await options.hashPassword(account.password);
    rows.push([username, { balanceMinor: account.balanceMinor, password }]);
  }
  return inTransaction(database, async (client) => {
    const locked = await client.query<{ accounts_imported: boolean }>(
      `SELECT accounts_imported FROM ${schema}.meta WHERE id = 1 FOR UPDATE`,
    );
    if (locked.rows[0]?.accounts_imported !== false) return false; // another store imported meanwhile
    const present = await client.query(`SELECT 1 FROM ${schema}.accounts LIMIT 1`);
    if (present.rowCount !== 0)
      throw new DatabaseError(`${schema} holds accounts but no record of their import: refusing to import over them`);
    await insertAccounts(client, schema, rows);
    await client.query(`UPDATE ${schema}.meta SET accounts_imported = true, bank = $1 WHERE id = 1`, [options.bank]);
    return true;
  });
}

async function accountsImported(database: Database, schema: string): Promise<boolean> {
  const result = await database.query<{ accounts_imported: boolean }>(
    `SELECT accounts_imported FROM ${schema}.meta WHERE id = 1`,
  );
  const row = result.rows[0];
  if (row === undefined) throw new DatabaseError(`${schema}.meta has no row`);
  return row.accounts_imported;
}

async function insertAccounts(
  client: DatabaseClient,
  schema: string,
  rows: ReadonlyArray<[string, Account]>,
): Promise<void> {
  for (let start = 0; start < rows.length; start += importRowsPerStatement) {
    const chunk = rows.slice(start, start + importRowsPerStatement);
    await client.query(
      `INSERT INTO ${schema}.accounts (username, balance_minor, password_hash, seed_position)
       SELECT username, balance_minor, password_hash, $4::integer + position
         FROM unnest($1::text[], $2::int8[], $3::text[]) WITH ORDINALITY AS t(username, balance_minor, password_hash, position)`,
      [
        chunk.map(([username]) => username),
        chunk.map(([, account]) => account.balanceMinor.toString()),
        chunk.map(([, account]) => account.password),
        start,
      ],
    );
  }
}

/**
 * The bank's accounts in the seed's CSV format (`username,balance,password,bank` with that header; balances in
 * major units as the seed writes them, passwords as their scrypt hashes), in the seed's order, from one
 * snapshot. The bank column is spelled as at the import. Balances are the durable balances: a prepared hold
 * has not moved money yet, as in the file store's CSV.
 */
export async function exportBankAccounts(database: Database, bank: string): Promise<string> {
  const schema = bankSchemaName(bank);
  const result = await database
    .query<{ username: string; balance_minor: string; password_hash: string; bank: string | null }>(
      `SELECT a.username, a.balance_minor, a.password_hash, m.bank
         FROM ${schema}.accounts a CROSS JOIN ${schema}.meta m
        ORDER BY a.seed_position`,
    )
    .catch((error: unknown) => {
      // 42P01: undefined table. The bank never opened a store on this database.
      if ((error as { code?: unknown }).code === "42P01")
        throw new DatabaseError(`bank ${bank} has no ledger in this database (no schema ${schema})`, { cause: error });
      throw error;
    });
  const rows: AccountRow[] = result.rows.map((row) => ({
    username: row.username,
    balanceMinor: readMinor(row.balance_minor, "accounts.balance_minor"),
    password: row.password_hash,
    bank: row.bank ?? bank,
  }));
  return serializeAccountsCsv(rows);
}
