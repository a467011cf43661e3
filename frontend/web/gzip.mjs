// Writes FILE.gz beside each FILE named on the command line, compressed
// with zopfli: plain gzip that browsers inflate as usual, some 4% smaller
// than `gzip -9`, and as deterministic (no name or time in the header).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const { gzipAsync } = createRequire(import.meta.url)("@gfx/zopfli");

for (const file of process.argv.slice(2)) {
  writeFileSync(`${file}.gz`, await gzipAsync(readFileSync(file), { numiterations: 15 }));
}
