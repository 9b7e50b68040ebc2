// The accounts and payments of `paynet bench`: a generated accounts file (one shared, pre-computed password
// hash, so banks load 100,000 rows without hashing), and a seeded planner that picks each payment's
// receiver and amount, so two runs with the same seed make the same choices.
import { assert } from "../../core/domain/assert.js";
import type { AccountRow } from "../../core/bank/store/file/accounts-csv.js";
import type { Prng } from "../../core/testing/prng.js";

export const benchAccountsMax = 1_000_000;
export const benchBanksDefault = Object.freeze(["BANKA", "BANKB"]);
const usernameDigits = 6;

/** u000001, u000002, …: 1-based, zero-padded to six digits (wider past 999,999). */
export function benchUsername(index: number): string {
  assert(Number.isSafeInteger(index) && index >= 0, `account index ${index} is not a non-negative integer`);
  return `u${String(index + 1).padStart(usernameDigits, "0")}`;
}

export interface GenerateOptions {
  accounts: number;
  banks: readonly string[];
  balanceMinor: bigint;
  /** One scrypt hash reused on every row (the banks only hash plaintext, so these rows load fast). */
  passwordHash: string;
}

/** `accounts` rows spread round-robin over `banks`: row i is at bank i mod banks.length. */
export function generateAccountRows(options: GenerateOptions): AccountRow[] {
  assert(Number.isSafeInteger(options.accounts) && options.accounts >= 1, "accounts must be a positive integer");
  assert(options.accounts <= benchAccountsMax, `accounts must be at most ${benchAccountsMax}`);
  assert(options.banks.length >= 1, "at least one bank");
  assert(options.balanceMinor >= 0n, "a balance is never negative");
  const rows: AccountRow[] = [];
  for (let index = 0; index < options.accounts; index += 1) {
    rows.push({
      username: benchUsername(index),
      balanceMinor: options.balanceMinor,
      password: options.passwordHash,
      bank: options.banks[index % options.banks.length]!,
    });
  }
  return rows;
}

export interface AccountRef {
  username: string;
  bank: string;
  /** `user@BANK`, the key of balance maps. */
  key: string;
}

export function accountKey(username: string, bank: string): string {
  return `${username}@${bank}`;
}

export function accountRefs(rows: readonly Pick<AccountRow, "username" | "bank">[]): AccountRef[] {
  return rows.map((row) => ({ username: row.username, bank: row.bank, key: accountKey(row.username, row.bank) }));
}

/**
 * The payers of `workers` workers, one distinct account each, alternating between banks so every bank
 * pays: the first account of each bank, then the second of each, and so on.
 */
export function choosePayers(accounts: readonly AccountRef[], workers: number): AccountRef[] {
  assert(
    workers >= 1 && workers <= accounts.length,
    `${workers} workers need as many distinct accounts (have ${accounts.length})`,
  );
  const byBank = groupByBank(accounts);
  const payers: AccountRef[] = [];
  for (let round = 0; payers.length < workers; round += 1) {
    for (const members of byBank.values()) {
      if (round < members.length && payers.length < workers) payers.push(members[round]!);
    }
  }
  return payers;
}

function groupByBank(accounts: readonly AccountRef[]): Map<string, AccountRef[]> {
  const byBank = new Map<string, AccountRef[]>();
  for (const account of accounts) {
    const members = byBank.get(account.bank) ?? [];
    members.push(account);
    byBank.set(account.bank, members);
  }
  return byBank;
}

export interface PlanOptions {
  /** Percent of payments whose receiver is at the payer's bank (0-100). */
  sameBankPercent: number;
  amountMinMinor: bigint;
  amountMaxMinor: bigint;
}

export interface PlannedPayment {
  target: AccountRef;
  amountMinor: bigint;
}

/** Picks receivers and amounts for payments; shared read-only by every worker, each with its own Prng. */
export class PaymentPlanner {
  readonly #byBank: Map<string, AccountRef[]>;
  /** For each bank, every account of the other banks. */
  readonly #othersByBank = new Map<string, AccountRef[]>();
  readonly #options: PlanOptions;

  constructor(accounts: readonly AccountRef[], options: PlanOptions) {
    assert(accounts.length >= 2, "payments need at least two accounts");
    assert(options.sameBankPercent >= 0 && options.sameBankPercent <= 100, "sameBankPercent must be in 0-100");
    assert(options.amountMinMinor >= 1n, "the smallest amount is positive");
    assert(options.amountMaxMinor >= options.amountMinMinor, "the amount range is ordered");
    assert(
      options.amountMaxMinor - options.amountMinMinor < BigInt(Number.MAX_SAFE_INTEGER),
      "the amount range fits a float draw",
    );
    this.#byBank = groupByBank(accounts);
    this.#options = options;
    for (const bank of this.#byBank.keys())
      this.#othersByBank.set(
        bank,
        accounts.filter((account) => account.bank !== bank),
      );
  }

  next(payer: AccountRef, prng: Prng): PlannedPayment {
    const sameBank = this.#byBank.get(payer.bank) ?? [];
    const others = this.#othersByBank.get(payer.bank) ?? [];
    const wantSameBank = prng.next() * 100 < this.#options.sameBankPercent;
    const target =
      (wantSameBank && sameBank.length >= 2) || others.length === 0
        ? pickOtherThan(sameBank, payer, prng)
        : prng.pick(others);
    const spanMinor = Number(this.#options.amountMaxMinor - this.#options.amountMinMinor);
    const amountMinor = this.#options.amountMinMinor + BigInt(prng.int(0, spanMinor));
    return { target, amountMinor };
  }
}

/** A uniform pick among `members` except `excluded` (which must be one of them). */
function pickOtherThan(members: readonly AccountRef[], excluded: AccountRef, prng: Prng): AccountRef {
  assert(members.length >= 2, "no other account to pay");
  const picked = members[prng.int(0, members.length - 2)]!;
  return picked.key === excluded.key ? members[members.length - 1]! : picked;
}
