// ESLint: typescript-eslint's type-checked rules on the TypeScript, plus the ones that matter most in code
// that moves money through promises: no promise left floating (a write whose failure nobody sees), none
// passed where a callback's result is ignored, and every switch over a union exhaustive (a new state must
// be handled). Formatting is Prettier's (width 120), so the style rules that would fight it are off.
import eslint from "@eslint/js";
import tseslint from "typescript-eslint";
import prettier from "eslint-config-prettier";
import globals from "globals";

export default tseslint.config(
  { ignores: ["dist/", "src/gen/", "node_modules/", "coverage/"] },
  eslint.configs.recommended,
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: "./tsconfig.test.json", tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          // node:test's describe/it return promises that the runner itself awaits.
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["describe", "it", "test", "suite"] },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
      // An async method that implements a promise-returning port rejects rather than throws even when it has
      // nothing to await; making such methods sync would change how their errors reach the caller.
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
    },
  },
  {
    // Plain JavaScript (the launcher, the test runner, scripts, this file): Node globals, no type information.
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { globals: globals.node },
  },
  prettier,
);
