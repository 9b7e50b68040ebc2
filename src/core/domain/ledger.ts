// A bank's ledger in the protocol's words: accounts, the holds of prepared legs, finished payments, and the
// entries that change them. Every store of a bank keeps these, whatever its format.

export type LegKind = "debit" | "credit";
export type FinalOutcome = "committed" | "aborted";

export interface Account {
  balanceMinor: bigint;
  /** An scrypt hash (see bank/passwords.ts); never plaintext once loaded. */
  password: string;
}

/** A prepared leg: the amount it reserves counts against the account until the decision arrives. */
export interface Hold {
  paymentId: string;
  username: string;
  kind: LegKind;
  amountMinor: bigint;
  preparedAtMs: number;
  expiresAtMs: number;
}

export interface Finished {
  paymentId: string;
  outcome: FinalOutcome;
  atMs: number;
  replyBalanceMinor: bigint | null;
  /**
   * A same-bank transfer's: when the gateway began it, by the gateway's clock. Once the bank forgets the
   * transfer, this tells a late question about it from a question about a payment never seen.
   */
  begunAtMs?: number;
}

/**
 * One change of a bank's state, the unit a ledger store makes durable. Balances are absolute (the account's
 * balance after), so applying an entry twice sets the same value again: replay after a crash is harmless.
 */
export type LedgerEntry =
  | {
      op: "hold";
      paymentId: string;
      username: string;
      kind: LegKind;
      amountMinor: bigint;
      preparedAtMs: number;
      expiresAtMs: number;
    }
  | {
      op: "commit";
      paymentId: string;
      balancesMinor: Record<string, bigint>;
      replyBalanceMinor: bigint;
      atMs: number;
      begunAtMs?: number;
    }
  | { op: "abort"; paymentId: string; atMs: number };

/** The finished payment a decided entry records. */
export function finishedOf(entry: Exclude<LedgerEntry, { op: "hold" }>): Finished {
  if (entry.op === "abort")
    return { paymentId: entry.paymentId, outcome: "aborted", atMs: entry.atMs, replyBalanceMinor: null };
  const finished: Finished = {
    paymentId: entry.paymentId,
    outcome: "committed",
    atMs: entry.atMs,
    replyBalanceMinor: entry.replyBalanceMinor,
  };
  if (entry.begunAtMs !== undefined) finished.begunAtMs = entry.begunAtMs;
  return finished;
}

/** The hold a hold entry makes. */
export function holdOf(entry: Extract<LedgerEntry, { op: "hold" }>): Hold {
  return {
    paymentId: entry.paymentId,
    username: entry.username,
    kind: entry.kind,
    amountMinor: entry.amountMinor,
    preparedAtMs: entry.preparedAtMs,
    expiresAtMs: entry.expiresAtMs,
  };
}

/**
 * Puts `finished` last in `records` (a later record for the same payment replaces the earlier one) and
 * forgets the oldest beyond `retainedMax`. Returns the watermark raised by what was forgotten: the latest
 * start of a forgotten same-bank transfer, or `watermarkMs` unchanged.
 */
export function retainNewest(
  records: Map<string, Finished>,
  finished: Finished,
  retainedMax: number,
  watermarkMs: number,
): number {
  records.delete(finished.paymentId);
  records.set(finished.paymentId, finished);
  let raisedMs = watermarkMs;
  while (records.size > retainedMax) {
    const oldest = records.values().next().value as Finished;
    if (oldest.begunAtMs !== undefined) raisedMs = Math.max(raisedMs, oldest.begunAtMs);
    records.delete(oldest.paymentId);
  }
  return raisedMs;
}
