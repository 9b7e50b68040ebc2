// One reader of append-only JSON-lines files, and one small schema toolkit that decodes their untrusted
// records into typed values. Used by the formats of the gateway's journal and archive
// (gateway/store/file/gateway-log.ts: transaction_logs.journal, and an earlier build's transaction_archive.jsonl
// read once to import it) and the bank's
// journal and finished log (bank/store/file/bank-journal.ts: journal_<BANK>.<generation>.jsonl,
// bank/store/file/finished-log.ts: finished_transactions_<BANK>.jsonl); the pending file's decoder
// (bank/store/file/pending-file.ts, one JSON document) uses the toolkit alone. Each record schema lives
// beside its adapter, which owns its format; this module owns only what every format shares: what a line
// is, what a torn append is, and what an int64 on disk is (int64String, the one definition).
//
// Decoders throw a RecordDecodeError naming the field (`balancesMinor.alice must be an integer string …`);
// decodeRecord and parseRecord turn it into a result value, and the readers into a JsonLinesError naming the
// file and the line. The caller decides what an error means.
import { isUtf8 } from "node:buffer";
import { assert } from "../domain/assert.js";
import { isMissing, nodeDisk, type Disk, type DiskFile } from "./disk.js";

// ---------------------------------------------------------------------------------------------------------
// Errors

export class RecordDecodeError extends Error {
  override readonly name = "RecordDecodeError";
  /** Where in the record: `balancesMinor.alice`, `holds[2].kind`; "" for the record itself. */
  readonly field: string;
  /** What the value must be, and what it was: `must be a boolean, got "yes"`. */
  readonly problem: string;

  constructor(field: string, problem: string) {
    super(field === "" ? `the record ${problem}` : `${field} ${problem}`);
    this.field = field;
    this.problem = problem;
  }

  /** The same error seen from the enclosing object or array (`key` is a property name or an index). */
  within(key: string | number): RecordDecodeError {
    const segment = typeof key === "number" ? `[${key}]` : fieldSegment(key);
    if (this.field === "") return new RecordDecodeError(segment, this.problem);
    return new RecordDecodeError(
      this.field.startsWith("[") ? `${segment}${this.field}` : `${segment}.${this.field}`,
      this.problem,
    );
  }
}

/** Stable codes of the readers' refusals; tests and callers branch on these, never on the message. */
export type JsonLinesErrorCode =
  /** A complete line that is not a record: not UTF-8, not JSON, or refused by the record's decoder. */
  | "JSONL_BAD_LINE"
  /** A line (complete or not) longer than maxLineBytes: no writer of these files makes one. */
  | "JSONL_LINE_TOO_LONG"
  /** fromBytes is beyond the end of the file or not just after a newline. */
  | "JSONL_BAD_START";

export class JsonLinesError extends Error {
  override readonly name = "JsonLinesError";
  readonly code: JsonLinesErrorCode;
  /** `path:line`, or `path: the line at byte N` when reading started mid-file. */
  readonly where: string;
  readonly path: string;
  /** The line's number counted from the file's start; null when reading started mid-file. */
  readonly lineNumber: number | null;
  /** Where the refused line starts. */
  readonly offsetBytes: number;

  constructor(
    code: JsonLinesErrorCode,
    at: { where: string; path: string; lineNumber: number | null; offsetBytes: number },
    detail: string,
    cause?: unknown,
  ) {
    super(`${at.where}: ${detail}; refusing to start, fix or restore the file`, { cause });
    this.code = code;
    this.where = at.where;
    this.path = at.path;
    this.lineNumber = at.lineNumber;
    this.offsetBytes = at.offsetBytes;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The schema toolkit

/** Decodes an untrusted value (a parsed JSON value) into a T, or throws a RecordDecodeError. */
export type Decoder<T> = (value: unknown) => T;

const optionalMark: unique symbol = Symbol("optional field");

/** A field that may be absent: object() leaves it out of the result when it is. */
export interface OptionalDecoder<T> extends Decoder<T | undefined> {
  readonly [optionalMark]: true;
}

export type DecodedBy<D> = D extends Decoder<infer T> ? T : never;
export type Shape = { readonly [key: string]: Decoder<unknown> };
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalDecoder<unknown> ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** What object(shape) decodes to: a property per field, optional where the field's decoder is. */
export type ObjectOf<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: DecodedBy<S[K]> } & {
    [K in OptionalKeys<S>]?: Exclude<DecodedBy<S[K]>, undefined>;
  }
>;

/** How much of an untrusted string an error message quotes. */
const quotedCharsMax = 40;

/** The bad value as an error message shows it: short, never the whole of an untrusted string. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > quotedCharsMax ? `${value.slice(0, quotedCharsMax)}…` : value);
    case "object":
      return "an object";
    case "function":
      return "a function";
    case "symbol":
      return value.toString();
    case "number":
    case "bigint":
    case "boolean":
      return String(value);
    default:
      return typeof value;
  }
}

function fieldSegment(key: string): string {
  return /^[A-Za-z0-9_$@-]{1,64}$/.test(key) ? key : `[${describeValue(key)}]`;
}

function refuse(value: unknown, mustBe: string): never {
  throw new RecordDecodeError("", `${mustBe}, got ${describeValue(value)}`);
}

export function string(): Decoder<string> {
  return (value) => (typeof value === "string" ? value : refuse(value, "must be a string"));
}

export function nonEmptyString(): Decoder<string> {
  return (value) => (typeof value === "string" && value !== "" ? value : refuse(value, "must be a non-empty string"));
}

export function boolean(): Decoder<boolean> {
  return (value) => (typeof value === "boolean" ? value : refuse(value, "must be a boolean"));
}

/** A JSON number that is a safe integer, within [min, max] (default: every safe integer). */
export function safeInteger(bounds: { min?: number; max?: number } = {}): Decoder<number> {
  const min = bounds.min ?? Number.MIN_SAFE_INTEGER;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  assert(Number.isSafeInteger(min), "safeInteger: min must be a safe integer");
  assert(Number.isSafeInteger(max), "safeInteger: max must be a safe integer");
  assert(min <= max, "safeInteger: min must not exceed max");
  const mustBe =
    bounds.min === undefined && bounds.max === undefined
      ? "must be an integer"
      : `must be an integer from ${min} to ${max}`;
  return (value) =>
    typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max
      ? value
      : refuse(value, mustBe);
}

export const int64Min = -(2n ** 63n);
export const int64Max = 2n ** 63n - 1n;
/** Digits from the first non-zero one: a number with more is at least 10^19, beyond int64. */
const int64SignificantDigitsMax = 19;

/**
 * The decimal text of an int64, or null: digits, a leading "-" only when `signed`, leading zeros allowed
 * (as every earlier reader allowed them), no "+", no spaces, no exponent; the value within int64 (checked
 * on the value, not by counting digits).
 */
export function parseInt64Text(text: string, signed: boolean): bigint | null {
  const length = text.length;
  const first = signed && length > 1 && text.charCodeAt(0) === 0x2d ? 1 : 0;
  if (first === length) return null;
  let significant = 0;
  for (let index = first; index < length; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x30 || code > 0x39) return null;
    if (significant > 0 || code !== 0x30) significant += 1;
  }
  if (significant > int64SignificantDigitsMax) return null;
  const value = BigInt(text);
  return value >= int64Min && value <= int64Max ? value : null;
}

/**
 * THE int64 on disk: a JSON string of decimal digits (see parseInt64Text), decoded to a bigint. Signed by
 * default; `{ signed: false }` refuses a leading "-" (and so every negative value).
 */
export function int64String(options: { signed?: boolean } = {}): Decoder<bigint> {
  const signed = options.signed ?? true;
  const mustBe = `must be an integer string from ${signed ? int64Min : 0n} to ${int64Max}`;
  return (value) => {
    const parsed = typeof value === "string" ? parseInt64Text(value, signed) : null;
    return parsed ?? refuse(value, mustBe);
  };
}

/** An amount or a balance in minor units: a non-negative int64 string. */
export function minorUnits(): Decoder<bigint> {
  return int64String({ signed: false });
}

/** One of the given JSON scalars (compared with ===). */
export function oneOf<const V extends readonly (string | number | boolean)[]>(values: V): Decoder<V[number]> {
  assert(values.length > 0, "oneOf: give at least one value");
  const allowed = new Set<unknown>(values);
  const mustBe = `must be ${values.length === 1 ? "" : "one of "}${values.map((value) => JSON.stringify(value)).join(", ")}`;
  return (value) => (allowed.has(value) ? (value as V[number]) : refuse(value, mustBe));
}

/** Exactly `expected` (a record type's tag: `op: literal("hold")`). */
export function literal<const V extends string | number | boolean>(expected: V): Decoder<V> {
  return oneOf([expected] as const);
}

export function nullable<T>(decoder: Decoder<T>): Decoder<T | null> {
  return (value) => (value === null ? null : decoder(value));
}

/** A field its writer leaves out when it is null (`{"progress": …}` lines): absent or null decodes to null. */
export function nullWhenAbsent<T>(decoder: Decoder<T>): Decoder<T | null> {
  return (value) => (value === undefined || value === null ? null : decoder(value));
}

/** A field that may be absent (undefined); object() then leaves it out of what it builds. */
export function optional<T>(decoder: Decoder<T>): OptionalDecoder<T> {
  const decode = (value: unknown): T | undefined => (value === undefined ? undefined : decoder(value));
  return Object.assign(decode, { [optionalMark]: true as const });
}

/** A further check of a decoded value (e.g. a name from a catalog), refusing with `mustBe`. */
export function refine<T, U extends T>(decoder: Decoder<T>, test: (value: T) => value is U, mustBe: string): Decoder<U>;
export function refine<T>(decoder: Decoder<T>, test: (value: T) => boolean, mustBe: string): Decoder<T>;
export function refine<T>(decoder: Decoder<T>, test: (value: T) => boolean, mustBe: string): Decoder<T> {
  return (value) => {
    const decoded = decoder(value);
    return test(decoded) ? decoded : refuse(value, mustBe);
  };
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A JSON object with the given fields, built field by field in the shape's order (records of one type then
 * share one hidden class), an absent optional field left out. Other keys are ignored, as every earlier
 * reader ignored them.
 */
export function object<S extends Shape>(shape: S): Decoder<ObjectOf<S>> {
  const fields = Object.keys(shape).map((key) => ({ key, decode: shape[key]!, optional: optionalMark in shape[key]! }));
  // A literal's "__proto__" would set the prototype; no record has such a field.
  assert(
    fields.every((field) => field.key !== "__proto__"),
    "object: no field may be named __proto__",
  );
  const build = compiledBuilder(fields) ?? loopBuilder(fields);
  return (value) => (isJsonObject(value) ? (build(value) as ObjectOf<S>) : refuse(value, "must be an object"));
}

type Field = { key: string; decode: Decoder<unknown>; optional: boolean };
type Builder = (value: Record<string, unknown>) => Record<string, unknown>;

function withinField(error: unknown, key: string): unknown {
  return error instanceof RecordDecodeError ? error.within(key) : error;
}

/**
 * The builder of object(), written out for its shape: a read of each field by its name and one object
 * literal, as a hand-written decoder has. A loop over the names (loopBuilder) reads and writes properties by a
 * varying key, which V8 cannot specialize: 300,000 parsed payment records decoded in about 0.55 s that way,
 * against 0.1–0.15 s written out (0.2 s for the hand-written decoder this replaced). Null when code
 * generation is disallowed (node --disallow-code-generation-from-strings).
 */
function compiledBuilder(fields: readonly Field[]): Builder | null {
  // Every name is quoted by JSON.stringify, a valid JavaScript string literal; decoders are parameters.
  const name = (index: number) => JSON.stringify(fields[index]!.key);
  const lines: string[] = [];
  fields.forEach((field, index) => lines.push(`at = ${index}; const v${index} = d${index}(value[${name(index)}]);`));
  const firstOptional = fields.findIndex((field) => field.optional);
  const literalEnd = firstOptional === -1 ? fields.length : firstOptional;
  lines.push(
    `const decoded = { ${fields
      .slice(0, literalEnd)
      .map((_, index) => `${name(index)}: v${index}`)
      .join(", ")} };`,
  );
  for (let index = literalEnd; index < fields.length; index += 1) {
    lines.push(
      fields[index]!.optional
        ? `if (v${index} !== undefined) decoded[${name(index)}] = v${index};`
        : `decoded[${name(index)}] = v${index};`,
    );
  }
  const source = `"use strict"; return function build(value) { let at = 0; try { ${lines.join(" ")} return decoded; } catch (error) { throw within(error, keys[at]); } };`;
  const parameters = [...fields.map((_, index) => `d${index}`), "within", "keys"];
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the generated decoder is the point (see above); refused code generation falls back
    const make = new Function(...parameters, source) as (...args: unknown[]) => Builder;
    return make(
      ...fields.map((field) => field.decode),
      withinField,
      fields.map((field) => field.key),
    );
  } catch (error) {
    if (error instanceof EvalError) return null;
    throw error;
  }
}

/** object()'s builder where code generation is disallowed: the same result, slower. */
function loopBuilder(fields: readonly Field[]): Builder {
  return (value) => {
    const decoded: Record<string, unknown> = {};
    let index = 0;
    try {
      for (; index < fields.length; index += 1) {
        const field = fields[index]!;
        const decodedField = field.decode(value[field.key]);
        if (decodedField !== undefined || !field.optional) decoded[field.key] = decodedField;
      }
    } catch (error) {
      throw withinField(error, fields[index]!.key);
    }
    return decoded;
  };
}

/** A JSON object used as a map (`balancesMinor: { alice: "100" }`), each value decoded by `value`. */
export function record<T>(
  value: Decoder<T>,
  options: { key?: Decoder<string>; entriesMax?: number } = {},
): Decoder<Record<string, T>> {
  const entriesMax = options.entriesMax ?? Number.MAX_SAFE_INTEGER;
  return (raw) => {
    if (!isJsonObject(raw)) return refuse(raw, "must be an object");
    const keys = Object.keys(raw);
    if (keys.length > entriesMax) refuse(raw, `must have at most ${entriesMax} entries`);
    const decoded: Record<string, T> = {};
    for (const key of keys) {
      try {
        // An own "__proto__" (JSON.parse makes one) would, assigned, set the prototype instead of a key.
        if (key === "__proto__") refuse(key, "must not be a key");
        if (options.key !== undefined) options.key(key);
        decoded[key] = value(raw[key]);
      } catch (error) {
        throw error instanceof RecordDecodeError ? error.within(key) : error;
      }
    }
    return decoded;
  };
}

export function array<T>(item: Decoder<T>, options: { lengthMax?: number } = {}): Decoder<T[]> {
  const lengthMax = options.lengthMax ?? Number.MAX_SAFE_INTEGER;
  return (raw) => {
    if (!Array.isArray(raw)) return refuse(raw, "must be an array");
    if (raw.length > lengthMax) refuse(raw, `must have at most ${lengthMax} items`);
    const decoded = new Array<T>(raw.length);
    for (let index = 0; index < raw.length; index += 1) {
      try {
        decoded[index] = item(raw[index]);
      } catch (error) {
        throw error instanceof RecordDecodeError ? error.within(index) : error;
      }
    }
    return decoded;
  };
}

/**
 * Records of several types told apart by a tag field (`op`): the tag picks the variant's decoder. Each
 * variant's shape should hold the tag itself (`op: literal("hold")`) so that its result carries it.
 */
export function union<K extends string, V extends Record<string, Decoder<unknown>>>(
  tagKey: K,
  variants: V,
): Decoder<DecodedBy<V[keyof V]>> {
  const tags = Object.keys(variants);
  const mustBe = `must be one of ${tags.map((tag) => JSON.stringify(tag)).join(", ")}`;
  return (value) => {
    if (!isJsonObject(value)) return refuse(value, "must be an object");
    const tag = value[tagKey];
    if (typeof tag !== "string" || !Object.hasOwn(variants, tag))
      throw new RecordDecodeError("", `${mustBe}, got ${describeValue(tag)}`).within(tagKey);
    return variants[tag]!(value) as DecodedBy<V[keyof V]>;
  };
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: RecordDecodeError };

/** Decodes an already parsed value; a refusal is returned, not thrown. */
export function decodeRecord<T>(decoder: Decoder<T>, value: unknown): DecodeResult<T> {
  try {
    return { ok: true, value: decoder(value) };
  } catch (error) {
    if (error instanceof RecordDecodeError) return { ok: false, error };
    throw error;
  }
}

/** Parses one JSON text (a line found through an index, say) and decodes it; a refusal is returned. */
export function parseRecord<T>(decoder: Decoder<T>, text: string): DecodeResult<T> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: new RecordDecodeError("", `is not JSON (${(error as Error).message})`) };
  }
  return decodeRecord(decoder, value);
}

// ---------------------------------------------------------------------------------------------------------
// The readers

/** No writer of these files makes a longer line; a longer one is damage (or not such a file). */
export const maxLineBytesDefault = 1 << 20;
/** V8's longest string is about 2^29 characters: a line must fit in one. */
const maxLineBytesLimit = 1 << 28;
const readChunkBytes = 1 << 20;

/**
 * Whether a writer's line (its text without the newline) is within `maxLineBytes`, as the readers require:
 * each writer asserts it before appending, so that it never writes a line its own reader refuses.
 */
export function fitsOneLine(text: string, maxLineBytes = maxLineBytesDefault): boolean {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: nearly every line passes without being measured.
  return text.length * 3 <= maxLineBytes || Buffer.byteLength(text, "utf8") <= maxLineBytes;
}
const newline = 0x0a;

export interface JsonLinesRead {
  /** Complete lines read (each decoded and given to onEntry). */
  lines: number;
  /** Where the complete lines end: the file's length less tornBytes. */
  completeBytes: number;
  /**
   * Bytes after the last newline: an append that a crash cut short before its fsync returned, so nothing
   * was answered on it. Not decoded; the owner of the file cuts it off before appending again.
   */
  tornBytes: number;
}

/** Called for each record, with its line's byte range [offsetBytes, endBytes) (endBytes after the newline). */
export type OnJsonLine<T> = (entry: T, offsetBytes: number, endBytes: number, where: string) => void | Promise<void>;

/** Turns complete lines into decoded entries, counting lines and bytes, and names a refused line. */
class LineDecoder<T> {
  readonly #path: string;
  readonly #fromBytes: number;
  readonly #decodeLine: Decoder<T>;
  readonly maxLineBytes: number;
  lines = 0;
  /** Where the next line starts. */
  offsetBytes: number;

  constructor(path: string, decodeLine: Decoder<T>, fromBytes: number, maxLineBytes: number) {
    assert(Number.isSafeInteger(fromBytes) && fromBytes >= 0, "fromBytes must be a non-negative integer");
    assert(
      Number.isSafeInteger(maxLineBytes) && maxLineBytes > 0 && maxLineBytes <= maxLineBytesLimit,
      `maxLineBytes must be an integer from 1 to ${maxLineBytesLimit}`,
    );
    this.#path = path;
    this.#decodeLine = decodeLine;
    this.#fromBytes = fromBytes;
    this.maxLineBytes = maxLineBytes;
    this.offsetBytes = fromBytes;
  }

  /** The label of the line starting at offsetBytes. */
  where(): string {
    // Line numbers count from the start of the file only when reading starts there.
    return this.#fromBytes === 0
      ? `${this.#path}:${this.lines + 1}`
      : `${this.#path}: the line at byte ${this.offsetBytes}`;
  }

  refuse(code: JsonLinesErrorCode, detail: string, cause?: unknown): never {
    const lineNumber = this.#fromBytes === 0 ? this.lines + 1 : null;
    throw new JsonLinesError(
      code,
      { where: this.where(), path: this.#path, lineNumber, offsetBytes: this.offsetBytes },
      detail,
      cause,
    );
  }

  /** Refuses a line (its bytes so far, newline excluded) longer than the limit. */
  checkLength(lineBytes: number): void {
    if (lineBytes > this.maxLineBytes)
      this.refuse("JSONL_LINE_TOO_LONG", `a line longer than ${this.maxLineBytes} bytes, the most a line may hold`);
  }

  /** Decodes bytes [start, end) of `buffer`, a complete line without its newline. */
  decode(buffer: Buffer, start: number, end: number, utf8Checked: boolean): T {
    if (!utf8Checked && !isUtf8(buffer.subarray(start, end))) this.refuse("JSONL_BAD_LINE", "not valid UTF-8");
    let raw: unknown;
    try {
      raw = JSON.parse(buffer.toString("utf8", start, end));
    } catch (error) {
      this.refuse("JSONL_BAD_LINE", `not JSON (${(error as Error).message})`, error);
    }
    try {
      return this.#decodeLine(raw);
    } catch (error) {
      if (error instanceof RecordDecodeError) this.refuse("JSONL_BAD_LINE", error.message, error);
      throw error;
    }
  }

  /** Moves past a line of `lineBytes` bytes, its newline included. */
  advance(lineBytes: number): void {
    this.lines += 1;
    this.offsetBytes += lineBytes;
  }
}

/** Whether every line of buffer[start, lastNewline) is UTF-8, checked at once (a newline never splits a character). */
function regionIsUtf8(buffer: Buffer, start: number): boolean {
  const lastNewline = buffer.lastIndexOf(newline);
  return lastNewline < start || isUtf8(buffer.subarray(start, lastNewline));
}

async function openOptional(disk: Disk, path: string): Promise<DiskFile | null> {
  try {
    return await disk.open(path, "r");
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** The file's bytes [fromBytes, toBytes) in chunks of at most readChunkBytes, each a buffer of its own. */
async function* chunksOf(file: DiskFile, fromBytes: number, toBytes: number): AsyncGenerator<Buffer> {
  for (let position = fromBytes; position < toBytes;) {
    const chunk = Buffer.allocUnsafe(Math.min(readChunkBytes, toBytes - position));
    const bytesRead = await file.read(chunk, 0, chunk.length, position);
    if (bytesRead === 0) return; // cut short while read: what is there is read
    position += bytesRead;
    yield chunk.subarray(0, bytesRead);
  }
}

/** Checks that reading may start at `fromBytes` of a file of `sizeBytes`: at its end or just after a newline. */
async function checkStart(
  handle: DiskFile | null,
  lines: LineDecoder<unknown>,
  fromBytes: number,
  sizeBytes: number,
): Promise<void> {
  if (fromBytes === 0) return;
  if (fromBytes > sizeBytes)
    lines.refuse(
      "JSONL_BAD_START",
      `reading was to start at byte ${fromBytes}, beyond the file's end (${sizeBytes} bytes)`,
    );
  const before = Buffer.alloc(1);
  await handle!.read(before, 0, 1, fromBytes - 1);
  if (before[0] !== newline) lines.refuse("JSONL_BAD_START", `byte ${fromBytes} does not start a line`);
}

/**
 * Streams an append-only JSON-lines file (it may be larger than one string may hold) from byte `fromBytes`
 * (0, or just after a newline) to its length when opened, decoding each complete line with `decodeLine` and
 * giving it to `onEntry` (awaited when it returns a promise) with its byte range and a `where` label. A final
 * line without its newline is a torn append: reported as tornBytes, not decoded. Any other bad line (not
 * UTF-8, not JSON, refused by the decoder, longer than maxLineBytes) throws a JsonLinesError naming the file
 * and the line: these files are the only copy of what they hold. A missing file has no lines.
 */
export async function readJsonLines<T>(
  path: string,
  decodeLine: Decoder<T>,
  onEntry: OnJsonLine<T>,
  options: { fromBytes?: number; maxLineBytes?: number; disk?: Disk } = {},
): Promise<JsonLinesRead> {
  const fromBytes = options.fromBytes ?? 0;
  const lines = new LineDecoder(path, decodeLine, fromBytes, options.maxLineBytes ?? maxLineBytesDefault);
  const handle = await openOptional(options.disk ?? nodeDisk, path);
  try {
    const sizeBytes = handle === null ? 0 : await handle.sizeBytes();
    await checkStart(handle, lines, fromBytes, sizeBytes);
    if (handle === null || sizeBytes === fromBytes) return { lines: 0, completeBytes: fromBytes, tornBytes: 0 };
    const tornBytes = await splitStream(chunksOf(handle, fromBytes, sizeBytes), lines, onEntry);
    return { lines: lines.lines, completeBytes: lines.offsetBytes, tornBytes };
  } finally {
    await handle?.close();
  }
}

/** The loop of readJsonLines: splits chunks into lines, carrying a line split across chunks. Returns the torn bytes. */
async function splitStream<T>(
  stream: AsyncIterable<Buffer>,
  lines: LineDecoder<T>,
  onEntry: OnJsonLine<T>,
): Promise<number> {
  let carried: Buffer[] = [];
  let carriedBytes = 0;
  for await (const chunk of stream) {
    let start = 0;
    if (carriedBytes > 0) {
      const end = chunk.indexOf(newline);
      lines.checkLength(carriedBytes + (end === -1 ? chunk.length : end));
      if (end === -1) {
        carried.push(chunk);
        carriedBytes += chunk.length;
        continue;
      }
      carried.push(chunk.subarray(0, end));
      const line = Buffer.concat(carried, carriedBytes + end);
      carried = [];
      carriedBytes = 0;
      const pending = onEntry(
        lines.decode(line, 0, line.length, false),
        lines.offsetBytes,
        lines.offsetBytes + line.length + 1,
        lines.where(),
      );
      if (pending !== undefined) await pending;
      lines.advance(line.length + 1);
      start = end + 1;
    }
    const utf8Checked = regionIsUtf8(chunk, start);
    for (let end = chunk.indexOf(newline, start); end !== -1; end = chunk.indexOf(newline, start)) {
      lines.checkLength(end - start);
      const pending = onEntry(
        lines.decode(chunk, start, end, utf8Checked),
        lines.offsetBytes,
        lines.offsetBytes + end - start + 1,
        lines.where(),
      );
      if (pending !== undefined) await pending;
      lines.advance(end - start + 1);
      start = end + 1;
    }
    if (start < chunk.length) {
      lines.checkLength(chunk.length - start);
      carried.push(chunk.subarray(start));
      carriedBytes = chunk.length - start;
    }
  }
  return carriedBytes;
}

/**
 * readJsonLines over a whole file already in memory (a bank journal generation, a finished log), from its
 * start. A string is measured in UTF-8 bytes. Returns the decoded entries in order.
 */
export function decodeJsonLines<T>(
  data: string | Buffer,
  path: string,
  decodeLine: Decoder<T>,
  options: { maxLineBytes?: number } = {},
): JsonLinesRead & { entries: T[] } {
  const buffer = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const lines = new LineDecoder(path, decodeLine, 0, options.maxLineBytes ?? maxLineBytesDefault);
  const entries: T[] = [];
  const utf8Checked = regionIsUtf8(buffer, 0);
  let start = 0;
  for (let end = buffer.indexOf(newline); end !== -1; end = buffer.indexOf(newline, start)) {
    lines.checkLength(end - start);
    entries.push(lines.decode(buffer, start, end, utf8Checked));
    lines.advance(end - start + 1);
    start = end + 1;
  }
  lines.checkLength(buffer.length - start);
  return { entries, lines: lines.lines, completeBytes: start, tornBytes: buffer.length - start };
}
