// Named validators used at every edge; each names the bad field and the allowed form.
import { PaymentError } from "./errors.js";

const usernamePattern = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
// Bank names become DNS labels in certificates (`<bank>.bank.paynet`): letters, digits, hyphens.
const bankPattern = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;
const paymentIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
export const passwordLengthMax = 256;

function describe(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

export function validateUsername(value: string, name = "username"): string {
  if (!usernamePattern.test(value)) {
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `${name} must be 1-64 characters of letters, digits and . _ @ - (starting with a letter or digit), got ${describe(value)}`,
    );
  }
  return value;
}

export function validateBankName(value: string, name = "bank"): string {
  if (!bankPattern.test(value)) {
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `${name} must be 1-32 letters, digits or inner hyphens, got ${describe(value)}`,
    );
  }
  return value;
}

export function validatePaymentId(value: string, name = "payment id"): string {
  if (!paymentIdPattern.test(value)) {
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `${name} must be 1-128 characters of letters, digits and . _ : - (starting with a letter or digit), got ${describe(value)}`,
    );
  }
  return value;
}

export function validatePassword(value: string): string {
  if (value.length === 0 || value.length > passwordLengthMax) {
    throw new PaymentError("INVALID_ARGUMENT", `password must be 1-${passwordLengthMax} characters`);
  }
  return value;
}

export function validateAddress(value: string, name = "address"): string {
  const match = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : 0;
  if (match === null || port < 1 || port > 65535) {
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `${name} must be host:port with a port in 1-65535, got ${describe(value)}`,
    );
  }
  return value;
}

/** How many gateways a `--gateway A,B,…` list or the clients' address file may name. */
export const gatewayAddressesMax = 16;

/**
 * A comma-separated list of host:port addresses (`--gateway A,B,C`): each validated, duplicates dropped (the
 * first kept), at least one and at most `max`. Spaces around the commas are allowed; an empty entry is not
 * (`A,,B` is more likely a typo than a wish).
 */
export function parseAddressList(value: string, name = "address list", max = gatewayAddressesMax): string[] {
  const entries = value.split(",").map((entry) => entry.trim());
  if (entries.some((entry) => entry === ""))
    throw new PaymentError("INVALID_ARGUMENT", `${name} must be host:port[,host:port…], got ${describe(value)}`);
  const addresses = [...new Set(entries.map((entry) => validateAddress(entry, name)))];
  if (addresses.length > max)
    throw new PaymentError("INVALID_ARGUMENT", `${name} names ${addresses.length} addresses; at most ${max}`);
  return addresses;
}
