// Every exit code a paynet process ends with, and the lines each command's --help prints about them: one place,
// so that a script's `case $?` and the help read the same numbers the code returns.

export const exitCodes = Object.freeze({
  ok: 0,
  /** The client: refused or aborted. status/payment: refused. bench: not conserved, or it failed. A role: could not start. */
  refused: 1,
  /** A bad flag or value, or certificates that cannot be used: nothing was sent. */
  usage: 2,
  /** The client: the payment is queued (the gateway was unreachable, or the outcome is unknown). */
  queued: 3,
  /** The gateway did not answer (client balance, status, payment). */
  unreachable: 4,
  /** A gateway or bank whose durable write failed, or that lost its lease or lock: memory is ahead of the store. */
  storeLost: 70,
  /** bench and verify stopped by SIGINT or SIGTERM (128 + SIGINT, as a shell reports it). */
  interrupted: 130,
});

/** `paynet verify`'s codes: 1 and 3 mean other things there than for the client. */
export const verifyExitCodes = Object.freeze({ ok: 0, violated: 1, usage: 2, failed: 3 });

/**
 * A usage error found after parsing (an --id naming no bank, a missing password): the process says it and exits
 * with exitCodes.usage, as for a bad flag.
 */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

type CodeLines = ReadonlyArray<readonly [code: number, meaning: string]>;

const usageLine = [exitCodes.usage, "usage error: a bad flag or value"] as const;
const roleLines: CodeLines = [
  [exitCodes.ok, "stopped by SIGINT or SIGTERM (it logs `stopped (SIGTERM)`)"],
  [exitCodes.refused, "could not start (say, a busy port, or another process of it running on this data dir)"],
  [exitCodes.usage, "usage error: a bad flag or value (an --id naming no bank)"],
  [exitCodes.storeLost, "a durable write failed, or its lease or lock on the store was lost: restart it"],
];
const operatorLines: CodeLines = [
  [exitCodes.ok, "shown"],
  [exitCodes.refused, "refused (an unknown or ambiguous payment id, a certificate the gateway does not accept)"],
  usageLine,
  [exitCodes.unreachable, "the gateway is not reachable"],
];

/** The exit codes of each command, as its --help lists them. */
export const exitCodeLines = Object.freeze({
  up: [
    [exitCodes.ok, "stopped by Ctrl-C, SIGTERM, or the end of its parent process"],
    [exitCodes.refused, "a process exited before the network was ready"],
    usageLine,
  ],
  gateway: roleLines,
  bank: roleLines,
  client: [
    [exitCodes.ok, "success (pay: committed)"],
    [exitCodes.refused, "refused: wrong password, insufficient funds, unknown account, … (pay: aborted)"],
    [
      exitCodes.usage,
      "usage error: a bad flag or amount, no password (no terminal to ask on), or certificates that cannot be used (a missing file, another CA); nothing was sent or queued",
    ],
    [
      exitCodes.queued,
      "queued: the gateway was unreachable or the outcome is unknown; `paynet client sync` sends it with the same id",
    ],
    [exitCodes.unreachable, "the gateway is unreachable (balance)"],
  ],
  status: operatorLines,
  payment: operatorLines,
  bench: [
    [exitCodes.ok, "every balance conserved"],
    [exitCodes.refused, "not conserved, or the bench could not run"],
    usageLine,
    [exitCodes.interrupted, "stopped by SIGINT or SIGTERM"],
  ],
  verify: [
    [verifyExitCodes.ok, "every invariant holds"],
    [verifyExitCodes.violated, "a violation"],
    [verifyExitCodes.usage, "usage error: a bad flag or value"],
    [verifyExitCodes.failed, "verify itself could not run (say, the network did not start)"],
    [exitCodes.interrupted, "stopped by SIGINT or SIGTERM"],
  ],
  certs: [[exitCodes.ok, "issued, or already present"], [exitCodes.refused, "could not issue them"], usageLine],
  db: [[exitCodes.ok, "done"], [exitCodes.refused, "the database refused or could not be reached"], usageLine],
} satisfies Record<string, CodeLines>);

/** The "Exit codes:" block of a command's --help. */
export function exitCodeHelp(command: keyof typeof exitCodeLines): string {
  return [
    "Exit codes:",
    ...exitCodeLines[command].map(([code, meaning]) => `  ${String(code).padEnd(3)} ${meaning}`),
  ].join("\n");
}
