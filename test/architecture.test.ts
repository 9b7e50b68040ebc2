// The architecture, read from the import graph: the payment logic (the coordinator, the participant) talks
// only to its store port, never to a file, and src/core never to src/roles; the file system is used only by
// the modules whose business it is. Imports are read with TypeScript's parser (static imports, `import
// type`, `export … from`, `import("…")`, `import x = require("…")`), so a comment or a string never counts;
// type-only imports count too, since a type from an adapter ties the logic to it just the same.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "..");

interface ParsedImport {
  specifier: string;
  typeOnly: boolean;
  line: number;
}

interface ParsedFile {
  imports: ParsedImport[];
  /** Lines of dynamic imports whose argument is not a string literal (the test cannot follow them). */
  unfollowable: number[];
}

/** Every module specifier a TypeScript source names. */
function parseImports(text: string, fileName: string): ParsedFile {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const imports: ParsedImport[] = [];
  const unfollowable: number[] = [];
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  const add = (specifier: ts.Expression | undefined, typeOnly: boolean, node: ts.Node) => {
    if (specifier !== undefined && ts.isStringLiteralLike(specifier))
      imports.push({ specifier: specifier.text, typeOnly, line: lineOf(node) });
    else unfollowable.push(lineOf(node));
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly === true, node);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined) {
      add(node.moduleSpecifier, node.isTypeOnly, node);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal, true, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { imports, unfollowable };
}

/** A module of the graph: a file as its repository path (`src/core/x.ts`), or a package as its specifier. */
type ModuleId = string;

interface Edge {
  target: ModuleId;
  typeOnly: boolean;
  line: number;
}

const fileSystemModules = new Set([
  "node:fs",
  "node:fs/promises",
  "proper-lockfile",
  "fs-native-extensions",
  "better-sqlite3",
]);

/** `fs` and `node:fs` are the same module; packages keep their name. */
function packageId(specifier: string): ModuleId {
  const builtin = specifier.startsWith("node:") ? specifier.slice("node:".length) : specifier;
  return ["fs", "fs/promises"].includes(builtin) ? `node:${builtin}` : specifier;
}

function repoPath(absolute: string): ModuleId {
  return relative(repoRoot, absolute).split(sep).join("/");
}

/** The .ts file a relative specifier names (NodeNext: `./x.js` is `./x.ts`), or null if none exists. */
function resolveRelative(fromFile: ModuleId, specifier: string): ModuleId | null {
  const base = resolve(repoRoot, dirname(fromFile), specifier);
  const candidates = [
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.mjs$/, ".mts"),
    base,
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  const found = candidates.find((candidate) => /\.m?ts$/.test(candidate) && existsSync(candidate));
  return found === undefined ? null : repoPath(found);
}

class ImportGraph {
  readonly #edges = new Map<ModuleId, Edge[]>();
  /** Problems that would hide edges: a relative import naming no file, a dynamic import of no literal. */
  readonly problems: string[] = [];

  edges(module: ModuleId): Edge[] {
    if (!module.startsWith("src/")) return [];
    let edges = this.#edges.get(module);
    if (edges !== undefined) return edges;
    const parsed = parseImports(readFileSync(join(repoRoot, module), "utf8"), module);
    edges = [];
    for (const { specifier, typeOnly, line } of parsed.imports) {
      if (!specifier.startsWith(".")) {
        edges.push({ target: packageId(specifier), typeOnly, line });
        continue;
      }
      const target = resolveRelative(module, specifier);
      if (target === null)
        this.problems.push(`${module}:${line} imports ${JSON.stringify(specifier)}, which names no source file`);
      else edges.push({ target, typeOnly, line });
    }
    for (const line of parsed.unfollowable)
      this.problems.push(`${module}:${line} imports a module this test cannot name (not a string literal)`);
    this.#edges.set(module, edges);
    return edges;
  }

  /** Every module reachable from `roots` within src/ (packages as leaves), each with the edge it was first reached by. */
  reach(roots: readonly ModuleId[]): Map<ModuleId, { from: ModuleId; edge: Edge } | null> {
    const reached = new Map<ModuleId, { from: ModuleId; edge: Edge } | null>(roots.map((root) => [root, null]));
    const queue = [...roots];
    for (let index = 0; index < queue.length; index += 1) {
      const module = queue[index]!;
      for (const edge of this.edges(module)) {
        if (reached.has(edge.target)) continue;
        reached.set(edge.target, { from: module, edge });
        queue.push(edge.target);
      }
    }
    return reached;
  }
}

/** The shortest import chain to `module`: `A:12 → B:3 → C`, each step at the line of its import ("→(type)": type-only). */
function chainTo(reached: Map<ModuleId, { from: ModuleId; edge: Edge } | null>, module: ModuleId): string {
  let chain = module;
  for (let step = reached.get(module); step !== null && step !== undefined; step = reached.get(step.from)) {
    chain = `${step.from}:${step.edge.line} ${step.edge.typeOnly ? "→(type)" : "→"} ${chain}`;
  }
  return chain;
}

/** Lines of a TypeScript source that read `import.meta` (comments and strings do not count). */
function importMetaLines(text: string, fileName: string): number[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const lines: number[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword)
      lines.push(source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return lines;
}

function listSources(directory: string): ModuleId[] {
  return readdirSync(join(repoRoot, directory), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.m?ts$/.test(entry.name))
    .map((entry) => repoPath(join(entry.parentPath, entry.name)))
    .sort();
}

const forbiddenToLogic: ReadonlyArray<[string, (module: ModuleId) => boolean]> = [
  ["the gateway's file adapter", (module) => module.startsWith("src/core/gateway/store/file/")],
  ["the bank's file adapter", (module) => module.startsWith("src/core/bank/store/file/")],
  // group-commit.ts too: batching writes is the adapter's business, behind the port.
  ["durable files", (module) => module.startsWith("src/core/durable/")],
  ["the file system", (module) => fileSystemModules.has(module)],
  ["the database driver", (module) => module === "pg"],
];

const logic: ReadonlyArray<[ModuleId, ModuleId]> = [
  ["src/core/gateway/coordinator.ts", "src/core/gateway/store/coordinator-store.ts"],
  ["src/core/bank/participant.ts", "src/core/bank/store/ledger-store.ts"],
];

/**
 * The modules of src/core that may use the file system, each with its reason. Anything else there holds
 * logic, or infrastructure that reaches files only through these.
 */
const fileSystemUsers: ReadonlyArray<[string, (module: ModuleId) => boolean]> = [
  ["a store's file adapter", (module) => /^src\/core\/[^/]+\/store\/file\//.test(module)],
  ["durable-file infrastructure", (module) => module.startsWith("src/core/durable/")],
  ["reads the TLS identity's PEM files", (module) => module === "src/core/transport/certificates.ts"],
  ["reads and makes the gateways' session key", (module) => module === "src/core/transport/session-key.ts"],
  ["the client's saved files", (module) => module === "src/core/client/client-files.ts"],
  ["reads and writes the registry of bank addresses", (module) => module === "src/core/gateway/bank-registry.ts"],
];

describe("the import parser", () => {
  it("finds static, type-only, re-exported and dynamic imports, and nothing in comments or strings", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "./b.js";',
      'import "./side-effect.js";',
      'export { c } from "./c.js";',
      'export * from "./d.js";',
      'export type { E } from "./e.js";',
      'const f = await import("./f.js");',
      'type G = typeof import("./g.js");',
      'import h = require("./h.js");',
      "const later = () => import(`./i.js`);",
      '// import { no } from "./commented.js";',
      '/* export * from "./block-commented.js"; */',
      'const text = "import { no } from \\"./in-a-string.js\\"";',
      "const dynamic = (name: string) => import(name);",
    ].join("\n");
    const parsed = parseImports(text, "fixture.ts");
    assert.deepEqual(parsed.imports, [
      { specifier: "./a.js", typeOnly: false, line: 1 },
      { specifier: "./b.js", typeOnly: true, line: 2 },
      { specifier: "./side-effect.js", typeOnly: false, line: 3 },
      { specifier: "./c.js", typeOnly: false, line: 4 },
      { specifier: "./d.js", typeOnly: false, line: 5 },
      { specifier: "./e.js", typeOnly: true, line: 6 },
      { specifier: "./f.js", typeOnly: false, line: 7 },
      { specifier: "./g.js", typeOnly: true, line: 8 },
      { specifier: "./h.js", typeOnly: false, line: 9 },
      { specifier: "./i.js", typeOnly: false, line: 10 },
    ]);
    assert.deepEqual(parsed.unfollowable, [14]);
  });
});

describe("the architecture", () => {
  const graph = new ImportGraph();

  for (const [root, port] of logic) {
    it(`${root} reaches no file adapter, no durable-file module and no file system`, () => {
      const reached = graph.reach([root]);
      const offenders: string[] = [];
      for (const module of reached.keys()) {
        const rule = forbiddenToLogic.find(([, matches]) => matches(module));
        if (rule !== undefined) offenders.push(`  ${rule[0]}: ${chainTo(reached, module)}`);
      }
      const problems = graph.problems.filter((problem) => reached.has(problem.slice(0, problem.indexOf(":"))));
      assert.deepEqual(
        [...offenders, ...problems.map((problem) => `  unreadable: ${problem}`)],
        [],
        `${root} must talk only to its store port (${port}), never to files; it reaches:\n${[...offenders, ...problems].join("\n")}`,
      );
    });

    it(`${root} imports its port, ${port}`, () => {
      const targets = graph.edges(root).map((edge) => edge.target);
      assert.ok(
        targets.includes(port),
        `${root} imports ${targets.filter((target) => target.startsWith("src/")).join(", ")}; not ${port}`,
      );
    });
  }

  it("src/core imports nothing from src/roles", () => {
    const core = listSources("src/core");
    const reached = graph.reach(core);
    const offenders = [...reached.keys()]
      .filter((module) => module.startsWith("src/roles/"))
      .map((module) => `  ${chainTo(reached, module)}`);
    assert.deepEqual(
      offenders,
      [],
      `src/core must not depend on the processes that wire it; it reaches:\n${offenders.join("\n")}`,
    );
  });

  it("in src/core only the file adapters, durable files and a few named modules use the file system", () => {
    const offenders: string[] = [];
    for (const module of listSources("src/core")) {
      if (fileSystemUsers.some(([, allowed]) => allowed(module))) continue;
      for (const edge of graph.edges(module)) {
        if (fileSystemModules.has(edge.target)) offenders.push(`  ${module}:${edge.line} → ${edge.target}`);
      }
    }
    const allowed = fileSystemUsers.map(([reason]) => reason).join("; ");
    assert.deepEqual(
      offenders,
      [],
      `only these may use the file system in src/core (${allowed}); also:\n${offenders.join("\n")}`,
    );
  });

  it("the bundled CLI finds paynet's own files only through src/package-paths.ts", () => {
    // Bundled into dist/paynet.js, every module's import.meta.url is the bundle's: a path relative to it is right
    // only in the module that knows it sits one level below the package root.
    const offenders = [...graph.reach(["src/cli.ts"]).keys()]
      .filter((module) => module.startsWith("src/") && module !== "src/package-paths.ts")
      .flatMap((module) =>
        importMetaLines(readFileSync(join(repoRoot, module), "utf8"), module).map((line) => `  ${module}:${line}`),
      );
    assert.deepEqual(offenders, [], `import.meta in code the bundle holds:\n${offenders.join("\n")}`);
  });
});
