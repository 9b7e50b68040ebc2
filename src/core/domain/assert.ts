// A broken invariant is a programmer error: crash at once rather than move money on a wrong belief.
import nodeAssert from "node:assert/strict";

export function assert(condition: unknown, message: string): asserts condition {
  nodeAssert.ok(condition, message);
}
