// Benchmark (not a test), run by e2e/examples/web-bench.rs: the page's
// first load from the local server (fresh browser context each round, so
// nothing is cached) against a baseline navigation to the API's OpenAPI
// document, and the time to validate a spec in the page with
// performance.now() around the WASM call the editor makes.
import { readFileSync } from "node:fs";
import { env, launch } from "./lib.mjs";

const base = env("KILN_URL");
const spec = readFileSync(env("KILN_SPEC_FILE"), "utf8");
const rounds = Number(env("KILN_ROUNDS"));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

const browser = await launch();
try {
  const load = [];
  const baseline = [];
  for (let i = 0; i < rounds; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    let t = Date.now();
    await page.goto(`${base}/api/v1/openapi.json`);
    baseline.push(Date.now() - t);
    await ctx.close();
    const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page2 = await ctx2.newPage();
    t = Date.now();
    await page2.goto(`${base}/login`);
    await page2.locator("#login-user").waitFor();
    load.push(Date.now() - t);
    await ctx2.close();
  }
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${base}/login`);
  await page.locator("#login-user").waitFor();
  const times = await page.evaluate(({ text, n }) => {
    const out = [];
    window.kiln.validateMarkers(text);
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      window.kiln.validateMarkers(text);
      out.push(performance.now() - t0);
    }
    return out;
  }, { text: spec, n: rounds * 20 });
  console.log(JSON.stringify({
    first_load_ms: median(load), first_load_min_ms: Math.min(...load),
    baseline_navigation_ms: median(baseline),
    validate_ms: median(times), validate_min_ms: Math.min(...times), validate_runs: times.length,
  }));
} finally {
  await browser.close();
}
