// The coordinator's view of the banks: one link per bank, each call with a deadline. The batched calls carry
// the legs of many payments at once (the gRPC adapter in bank-registry.ts batches them further per bank).
import type { PaymentError } from "../domain/errors.js";
import type { LegKind } from "../domain/ledger.js";

export interface PrepareLeg {
  paymentId: string;
  username: string;
  kind: LegKind;
  amountMinor: bigint;
}

export interface BankLink {
  /** Each leg's refusal, or null for a yes vote (its hold is durable at the bank); never rejects. */
  prepareAll(legs: readonly PrepareLeg[], timeoutMs: number): Promise<Array<PaymentError | null>>;
  /** Each payment's balance after (of its account at this bank), or the error; never rejects. */
  commitAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<bigint | PaymentError>>;
  /** Each payment's error, or null once the bank has recorded the abort; never rejects. */
  abortAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<PaymentError | null>>;
  /** A same-bank payment in one step; `begunAtMs` is when this gateway began it (its record's createdAtMs). */
  transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
    timeoutMs: number,
  ): Promise<bigint>;
  /** Settles a transfer whose answer was lost: resolves if it will never apply, IDEMPOTENCY_CONFLICT if it applied. */
  settleTransfer(paymentId: string, begunAtMs: number, timeoutMs: number): Promise<void>;
}

export interface BankDirectory {
  /** The bank's link, or null when no bank of that name has registered. */
  link(bank: string): BankLink | null;
}
