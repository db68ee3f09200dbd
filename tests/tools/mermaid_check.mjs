// Parse Mermaid text with the `mermaid` package's own parser (no browser, no DOM needed
// for parsing): prints the diagram type and exits 0 when it parses; prints the parser's
// message and exits 1 when it does not.
// Usage: node mermaid_check.mjs PREFIX FILE   (PREFIX/node_modules holds mermaid)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [prefix, file] = process.argv.slice(2);
const bundle = join(prefix, 'node_modules', 'mermaid', 'dist', 'mermaid.esm.min.mjs');
const { default: mermaid } = await import(pathToFileURL(bundle).href);
mermaid.initialize({ startOnLoad: false });
try {
  const result = await mermaid.parse(readFileSync(file, 'utf8'));
  console.log(result.diagramType);
} catch (error) {
  console.error(error?.message ?? String(error));
  process.exit(1);
}
