// A small seeded pseudo-random generator (mulberry32) for `paynet verify`: every random choice of a run
// (payment kinds, accounts, amounts, which process to kill and when) flows from one 32-bit seed, so the
// same seed gives the same schedule. Not for secrets: ids, tokens and keys use node:crypto.
import { assert } from "../domain/assert.js";

export const seedMax = 0xffff_ffff;

/** FNV-1a over the label's UTF-16 units, mixed with the seed and finalized (murmur3 fmix32). */
function mixSeed(seed: number, label: string): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let index = 0; index < label.length; index += 1) {
    hash ^= label.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b) >>> 0;
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35) >>> 0;
  hash ^= hash >>> 16;
  return hash >>> 0;
}

export class Prng {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    assert(Number.isSafeInteger(seed), "a seed must be an integer");
    assert(seed >= 0 && seed <= seedMax, `a seed must be in 0-${seedMax}`);
    this.seed = seed;
    this.#state = seed;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    assert(Number.isSafeInteger(min), "int: min must be an integer");
    assert(Number.isSafeInteger(max), "int: max must be an integer");
    assert(min <= max, `int: empty range ${min}..${max}`);
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    assert(p >= 0 && p <= 1, `chance: ${p} is not a probability`);
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, "pick: no items");
    return items[this.int(0, items.length - 1)]!;
  }

  /** One key of `weights`, with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
    assert(total > 0, "weighted: the weights sum to zero");
    let point = this.next() * total;
    for (const [key, weight] of entries) {
      point -= weight;
      if (point < 0) return key;
    }
    return entries.at(-1)![0];
  }

  /** A new array with the items in a random order (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const shuffled = [...items];
    for (let index = shuffled.length - 1; index > 0; index -= 1) {
      const other = this.int(0, index);
      [shuffled[index], shuffled[other]] = [shuffled[other]!, shuffled[index]!];
    }
    return shuffled;
  }

  /**
   * An independent stream for one purpose, derived from the seed and a label only: draws made from one
   * stream (say, a client's retries, which depend on timing) never shift another (the fault schedule).
   */
  fork(label: string): Prng {
    return new Prng(mixSeed(this.seed, label));
  }
}
