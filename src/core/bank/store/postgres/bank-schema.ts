// The tables of a bank's ledger in PostgreSQL, one schema per bank (`paynet_bank_<bank>`), created and upgraded
// by versioned migrations (durable/postgres/database.ts). Money is a bigint of minor units everywhere.
//
// The invariants the participant checks in memory are checked again by the table itself, so that a second
// writer on the same schema (a mistake, or a stale process) is refused by the server rather than believed:
//   - accounts.held_debit_minor is the sum of the account's debit holds, held_credit_minor of its credit
//     holds, kept by the same statements that insert and delete holds;
//   - a balance never goes below what its debit holds reserve (balance_minor >= held_debit_minor), and never
//     above the limit once its credit holds apply (balance_minor + held_credit_minor <= balanceMinorMax);
//   - finished.seq is dense (assigned from meta.next_finished_seq in the writing transaction, never from a
//     sequence that a rollback would leave a gap in), so the newest N are exactly `seq >= next - N`.
import { checkedSchemaName, type Migration } from "../../../durable/postgres/database.js";
import { balanceMinorMax } from "../../../domain/money.js";

/**
 * The schema of `bank`'s ledger: `paynet_bank_<lowercase bank>`, a dash as an underscore (refused if the name
 * would not be a safe identifier). Banks whose names differ only in case share a schema: a deployment names
 * its banks once, in the seed, where they are distinct.
 */
export function bankSchemaName(bank: string): string {
  return checkedSchemaName(`paynet_bank_${bank.toLowerCase().replace(/-/g, "_")}`);
}

export const bankMigrations: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: "accounts, holds, finished payments and the ledger's meta row",
    sql: `
      CREATE TABLE accounts (
        username text PRIMARY KEY,
        balance_minor bigint NOT NULL CHECK (balance_minor >= 0),
        held_debit_minor bigint NOT NULL DEFAULT 0 CHECK (held_debit_minor >= 0),
        held_credit_minor bigint NOT NULL DEFAULT 0 CHECK (held_credit_minor >= 0),
        password_hash text NOT NULL CHECK (password_hash <> ''),
        -- The account's row number in the seed it was imported from: an export lists them in that order.
        seed_position integer NOT NULL,
        CONSTRAINT debit_holds_covered CHECK (balance_minor >= held_debit_minor),
        CONSTRAINT credit_holds_within_limit CHECK (balance_minor + held_credit_minor <= ${balanceMinorMax})
      );
      CREATE TABLE holds (
        payment_id text PRIMARY KEY,
        username text NOT NULL REFERENCES accounts (username),
        kind text NOT NULL CHECK (kind IN ('debit', 'credit')),
        amount_minor bigint NOT NULL CHECK (amount_minor > 0),
        prepared_at_ms bigint NOT NULL,
        expires_at_ms bigint NOT NULL
      );
      CREATE INDEX holds_username ON holds (username);
      CREATE TABLE finished (
        payment_id text PRIMARY KEY,
        seq bigint NOT NULL UNIQUE,
        outcome text NOT NULL CHECK (outcome IN ('committed', 'aborted')),
        at_ms bigint NOT NULL,
        reply_balance_minor bigint,
        begun_at_ms bigint,
        CHECK ((outcome = 'committed') = (reply_balance_minor IS NOT NULL))
      );
      CREATE TABLE meta (
        id integer PRIMARY KEY CHECK (id = 1),
        bank text,
        accounts_imported boolean NOT NULL DEFAULT false,
        next_finished_seq bigint NOT NULL DEFAULT 1,
        transfers_forgotten_through_ms bigint NOT NULL DEFAULT 0
      );
      INSERT INTO meta (id) VALUES (1);
    `,
  },
]);
