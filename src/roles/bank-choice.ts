// Which bank a command line means: a name in any case (when only one bank has it), or, for `paynet bank --id`,
// a 1-based number into the banks of server/dummydata.csv, or, on a terminal with neither, the bank chosen from
// that list, as the original program asked for it.
import { relative } from "node:path";
import { banksOf, readAccountsCsv } from "../core/bank/store/file/accounts-csv.js";
import { validateBankName } from "../core/domain/validate.js";
import { UsageError } from "./exit-codes.js";

export type BankNameMatch =
  | { kind: "exact"; bank: string }
  /** The name in another case, and only one bank has it so. */
  | { kind: "folded"; bank: string }
  | { kind: "ambiguous"; matches: string[] }
  | { kind: "none" };

/** `name` among `banks`: exactly, else ignoring case when that picks one bank. */
export function matchBankName(name: string, banks: readonly string[]): BankNameMatch {
  if (banks.includes(name)) return { kind: "exact", bank: name };
  const folded = banks.filter((bank) => bank.toLowerCase() === name.toLowerCase());
  if (folded.length === 1) return { kind: "folded", bank: folded[0]! };
  return folded.length === 0 ? { kind: "none" } : { kind: "ambiguous", matches: folded };
}

const ordinals = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

/** 1 → "first", 11 → "11th", 22 → "22nd". */
export function ordinal(position: number): string {
  const word = ordinals[position - 1];
  if (word !== undefined) return word;
  const teen = position % 100 >= 11 && position % 100 <= 13;
  const suffix = teen ? "th" : (["th", "st", "nd", "rd"][position % 10] ?? "th");
  return `${position}${suffix}`;
}

export interface ChosenBank {
  bank: string;
  /** How the bank was found from --id, for the log: null when --id named it exactly. */
  note: string | null;
}

/** The question asked on a terminal when no --id was given: resolves to one of `banks`. */
export type AskBank = (banks: readonly string[]) => Promise<string>;

/**
 * The bank `--id` names in the accounts file (a name, in any case if unambiguous, or a 1-based number), or the
 * one `ask` chooses when there is no --id (null: no terminal to ask on). A usage error names the banks there are.
 */
export async function chooseBank(
  id: string | undefined,
  accountsCsv: string,
  ask: AskBank | null,
): Promise<ChosenBank> {
  const banks = banksOf(await readAccountsCsv(accountsCsv));
  const file = relative(process.cwd(), accountsCsv) || accountsCsv;
  const list = banks.map((bank, index) => `${index + 1} ${bank}`).join(", ");
  if (banks.length === 0) throw new UsageError(`${file} names no bank: add its accounts first`);
  if (id === undefined) {
    if (ask === null)
      throw new UsageError(
        `name the bank with --id, by name or number (${list} in ${file}), or run on a terminal to choose`,
      );
    return { bank: await ask(banks), note: null };
  }
  if (/^[0-9]+$/.test(id)) {
    const position = Number(id);
    const bank = banks[position - 1];
    if (bank === undefined) throw new UsageError(`--id ${id}: ${file} names ${banks.length} banks: ${list}`);
    return { bank, note: `bank ${position} is ${bank}, the ${ordinal(position)} bank in ${file}` };
  }
  try {
    validateBankName(id, "--id");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const match = matchBankName(id, banks);
  switch (match.kind) {
    case "exact":
      return { bank: match.bank, note: null };
    case "folded":
      return { bank: match.bank, note: `--id ${id} is bank ${match.bank} (names are matched ignoring case)` };
    case "ambiguous":
      throw new UsageError(`--id ${id}: banks ${match.matches.join(" and ")} differ only in case; give the exact name`);
    case "none":
      throw new UsageError(`--id ${id}: no bank ${id} in ${file}; its banks: ${list}`);
  }
}

/**
 * A client's --bank as the network spells it, from the data dir's accounts file when there is one: `sbi` is SBI
 * when only one bank is so spelled. With no file (a client on another machine), or no match, it stays as given,
 * and the gateway answers for it.
 */
export async function canonicalBankName(name: string, accountsCsv: string, flag: string): Promise<string> {
  let banks: string[];
  try {
    banks = banksOf(await readAccountsCsv(accountsCsv));
  } catch {
    return name; // no readable accounts file here: nothing to match against
  }
  const match = matchBankName(name, banks);
  if (match.kind === "ambiguous")
    throw new UsageError(
      `${flag} ${name}: banks ${match.matches.join(" and ")} differ only in case; give the exact name`,
    );
  return match.kind === "none" ? name : match.bank;
}

/** On a terminal, the bank asked for from the list (arrow keys, Enter); elsewhere null: nobody to ask. */
export function askOnTerminal(): AskBank | null {
  if (process.stdin.isTTY !== true || process.stdout.isTTY !== true) return null;
  return async (banks) => {
    const { select } = await import("@inquirer/prompts");
    try {
      return await select({
        message: "Which bank is this?",
        choices: banks.map((bank) => ({ value: bank, name: bank })),
      });
    } catch (error) {
      if ((error as Error)?.name === "ExitPromptError") throw new UsageError("no bank chosen (name it with --id)");
      throw error;
    }
  };
}
