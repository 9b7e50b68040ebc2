// Specification of src/core/money.ts: amounts are integer minor units (cents) in bigint; text is a decimal
// with at most two places. Errors are asserted by class and `code`, never by message text.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  amountMinorMax,
  formatMinor,
  parseAmount,
  parseDecimalMinor,
  validateAmountMinor,
} from "../src/core/domain/money.js";
import { PaymentError, reasons, type Reason } from "../src/core/domain/errors.js";

function paymentError(code: Reason): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof PaymentError, `expected a PaymentError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

describe("parseDecimalMinor", () => {
  const valid: ReadonlyArray<[string, bigint]> = [
    ["0", 0n],
    ["0.00", 0n],
    ["0.01", 1n],
    ["0.1", 10n],
    ["0.10", 10n],
    ["0.99", 99n],
    ["1", 100n],
    ["12", 1200n],
    ["12.5", 1250n],
    ["12.50", 1250n],
    ["12.05", 1205n],
    ["1000000000000", amountMinorMax],
    // The largest text form: 18 integer digits and 2 places.
    ["999999999999999999.99", 99_999_999_999_999_999_999n],
  ];
  for (const [text, expected] of valid) {
    it(`parses ${JSON.stringify(text)} as ${expected}`, () => {
      assert.equal(parseDecimalMinor(text), expected);
    });
  }

  const invalid: readonly string[] = [
    "",
    " ",
    " 12",
    "12 ",
    "12\n",
    "-5",
    "-0",
    "+5",
    "1.234",
    "0.001",
    "abc",
    "1e3",
    "NaN",
    "Infinity",
    "12.",
    ".5",
    "01",
    "00",
    "1,000",
    "1_000",
    "1 000",
    "0x10",
    "１２",
    // 19 integer digits: beyond the text form's bound.
    "1000000000000000000",
    "99999999999999999999999999999999",
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)} with null`, () => {
      assert.equal(parseDecimalMinor(text), null);
    });
  }
});

describe("parseAmount", () => {
  const valid: ReadonlyArray<[string, bigint]> = [
    ["0.01", 1n],
    ["0.1", 10n],
    ["1", 100n],
    ["12.50", 1250n],
    ["999999999999.99", amountMinorMax - 1n],
    ["1000000000000", amountMinorMax],
    ["1000000000000.00", amountMinorMax],
    // A user-typed amount is trimmed before parsing (parseDecimalMinor itself refuses the spaces).
    [" 12", 1200n],
    ["12.50\n", 1250n],
  ];
  for (const [text, expected] of valid) {
    it(`accepts ${JSON.stringify(text)} as ${expected}`, () => {
      assert.equal(parseAmount(text), expected);
    });
  }

  const invalid: readonly string[] = [
    "",
    "   ",
    "-5",
    "-0.01",
    "0",
    "0.00",
    "1.234",
    "0.001",
    "abc",
    "1e3",
    "NaN",
    "Infinity",
    "12.",
    ".5",
    "+5",
    "1 000",
    "1,000",
    // amountMinorMax + 1 and beyond.
    "1000000000000.01",
    "1000000000001",
    "999999999999999999",
    "1000000000000000000",
    "99999999999999999999999999999999",
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)} with INVALID_AMOUNT`, () => {
      assert.throws(() => parseAmount(text), paymentError("INVALID_AMOUNT"));
    });
  }

  it("reports INVALID_AMOUNT as a gRPC INVALID_ARGUMENT", () => {
    assert.throws(
      () => parseAmount("0", "payment amount"),
      (error) => error instanceof PaymentError && error.grpcStatus === reasons.INVALID_ARGUMENT,
    );
  });
});

describe("validateAmountMinor", () => {
  const valid: readonly bigint[] = [1n, 100n, amountMinorMax - 1n, amountMinorMax];
  for (const amountMinor of valid) {
    it(`returns ${amountMinor} unchanged`, () => {
      assert.equal(validateAmountMinor(amountMinor), amountMinor);
    });
  }

  const invalid: readonly bigint[] = [0n, -1n, -amountMinorMax, amountMinorMax + 1n, amountMinorMax * 10n];
  for (const amountMinor of invalid) {
    it(`rejects ${amountMinor} with INVALID_AMOUNT`, () => {
      assert.throws(() => validateAmountMinor(amountMinor, "amount"), paymentError("INVALID_AMOUNT"));
    });
  }
});

describe("formatMinor", () => {
  const table: ReadonlyArray<[bigint, string]> = [
    [0n, "0.00"],
    [1n, "0.01"],
    [10n, "0.10"],
    [99n, "0.99"],
    [100n, "1.00"],
    [1205n, "12.05"],
    [1250n, "12.50"],
    [amountMinorMax, "1000000000000.00"],
    [-1n, "-0.01"],
    [-1250n, "-12.50"],
  ];
  for (const [amountMinor, expected] of table) {
    it(`formats ${amountMinor} as ${JSON.stringify(expected)}`, () => {
      assert.equal(formatMinor(amountMinor), expected);
    });
  }

  it("round-trips through parseDecimalMinor for non-negative amounts", () => {
    for (const amountMinor of [0n, 1n, 10n, 99n, 100n, 101n, 1250n, amountMinorMax, 99_999_999_999_999_999_999n]) {
      assert.equal(parseDecimalMinor(formatMinor(amountMinor)), amountMinor);
    }
  });
});
