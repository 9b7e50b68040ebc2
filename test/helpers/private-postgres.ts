// A PostgreSQL server of the test's own (initdb, pg_ctl on a free port and a private socket directory), for
// the one fault the shared server cannot take: being restarted. `restart()` is `pg_ctl restart -m immediate`:
// the postmaster and every backend stop without a checkpoint, as on a crash, and the start replays the WAL.
// The binaries come from PAYNET_TEST_PG_BIN, else from `pg_config --bindir`. Run as root (as CI is here), the
// server runs as the `postgres` user, since PostgreSQL refuses to run as root.
import { spawn, execFileSync } from "node:child_process";
import { chown, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  serverUrl: string;
  /** Immediate-mode restart (no checkpoint: crash recovery at start); resolves once it accepts connections. */
  restart(): Promise<void>;
  /** Stops it and removes its files. */
  destroy(): Promise<void>;
}

function binDir(): string {
  if (process.env.PAYNET_TEST_PG_BIN) return process.env.PAYNET_TEST_PG_BIN;
  try {
    return execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
  } catch (error) {
    throw new Error(
      "this test runs a PostgreSQL server of its own and needs its binaries (initdb, pg_ctl): install the server " +
        "(Debian: apt install postgresql) or point PAYNET_TEST_PG_BIN at the folder that holds them",
      { cause: error },
    );
  }
}

/** The uid and gid of `postgres` when running as root (PostgreSQL will not run as root), else none. */
async function runAs(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const line = (await readFile("/etc/passwd", "utf8")).split("\n").find((entry) => entry.startsWith("postgres:"));
  if (line === undefined) throw new Error("running as root, and there is no postgres user to run the server as");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

function run(command: string, args: string[], user: { uid: number; gid: number } | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(user ?? {}),
      // pg_ctl's server inherits the environment: keep the caller's PG* settings out of it.
      env: { PATH: process.env.PATH ?? "", LANG: "C" },
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output}`)),
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  const user = await runAs();
  const root = await mkdtemp(join(tmpdir(), "paynet-pg-"));
  if (user !== null) await chown(root, user.uid, user.gid);
  const data = join(root, "data");
  const port = await freePort();
  const pgCtl = join(bin, "pg_ctl");
  const log = join(root, "server.log");
  // Durable as production must be (fsync and synchronous_commit on), small, and reachable only here.
  const options = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${root}`,
    "-c fsync=on",
    "-c synchronous_commit=on",
    "-c shared_buffers=16MB",
    "-c max_connections=60",
  ].join(" ");
  await run(join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"], user);
  const start = () => run(pgCtl, ["start", "-D", data, "-w", "-t", "60", "-l", log, "-o", options], user);
  await start();
  return {
    serverUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await run(pgCtl, ["stop", "-D", data, "-m", "immediate", "-w", "-t", "60"], user);
      await start();
    },
    async destroy() {
      await run(pgCtl, ["stop", "-D", data, "-m", "immediate", "-w", "-t", "60"], user).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    },
  };
}
