// Money is integer minor units (cents) in bigint; text form is a decimal with at most two places.
import { PaymentError } from "./errors.js";

export const minorPerMajor = 100n;
/** Upper bound of a single payment: 1e12 major units. */
export const amountMinorMax = 100_000_000_000_000n;
/** Upper bound of a balance, so that sums of a few balances stay far from any overflow on the wire. */
export const balanceMinorMax = 1_000_000_000_000_000n;

const decimalPattern = /^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,2}))?$/;

/** Parses "12", "12.5" or "12.50" into minor units; null when the text is not such a number. */
export function parseDecimalMinor(text: string): bigint | null {
  const match = decimalPattern.exec(text);
  if (match === null) return null;
  const major = BigInt(match[1]!);
  const fraction = (match[2] ?? "").padEnd(2, "0");
  return major * minorPerMajor + BigInt(fraction);
}

export function formatMinor(amountMinor: bigint): string {
  const negative = amountMinor < 0n;
  const absolute = negative ? -amountMinor : amountMinor;
  const major = absolute / minorPerMajor;
  const cents = (absolute % minorPerMajor).toString().padStart(2, "0");
  return `${negative ? "-" : ""}${major}.${cents}`;
}

/** Checks a payment amount at an edge: positive and at most amountMinorMax. */
export function validateAmountMinor(amountMinor: bigint, name = "amount"): bigint {
  if (amountMinor <= 0n) {
    throw new PaymentError("INVALID_AMOUNT", `${name} must be positive, got ${formatMinor(amountMinor)}`);
  }
  if (amountMinor > amountMinorMax) {
    throw new PaymentError(
      "INVALID_AMOUNT",
      `${name} must be at most ${formatMinor(amountMinorMax)}, got ${formatMinor(amountMinor)}`,
    );
  }
  return amountMinor;
}

/** Parses a user-typed amount ("12.50"): a positive decimal with at most two places, within bounds. */
export function parseAmount(text: string, name = "amount"): bigint {
  const amountMinor = parseDecimalMinor(text.trim());
  if (amountMinor === null) {
    throw new PaymentError(
      "INVALID_AMOUNT",
      `${name} must be a positive decimal with at most 2 places (e.g. 12.50), got ${JSON.stringify(text)}`,
    );
  }
  return validateAmountMinor(amountMinor, name);
}
