// Process plumbing shared by the roles: log lines and orderly exit on SIGINT/SIGTERM.
import chalk from "chalk";

export function logLine(role: string, line: string): void {
  process.stdout.write(`${chalk.dim(new Date().toISOString())} ${chalk.cyan(`[${role}]`)} ${line}\n`);
}

export function onTerminate(cleanup: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    cleanup().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`paynet: shutdown after ${signal} failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
