// Shared by the browser scripts: playwright-core from frontend/web's
// node_modules, driving Debian's Chromium headless.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.KILN_WEB_DIR, "package.json"));
const { chromium } = require("playwright-core");

export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set`);
  return v;
}

export async function launch() {
  return chromium.launch({
    executablePath: env("KILN_CHROMIUM"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

// Logs out whoever is logged in (if anyone) and logs `user` in.
export async function switchUser(page, base, logIn, user, password) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${base}/`);
  const logout = page.getByRole("button", { name: "Log out" });
  const name = page.getByLabel("User name");
  // The app asks the server who is logged in before it draws either.
  await logout.or(name).first().waitFor();
  if (await logout.count()) {
    await logout.click();
    await name.waitFor();
  }
  await logIn(page, user, password);
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Runs `steps` in order on one context object, with a screenshot after
// each into `dir` as NN-name.png. Prints one JSON line per step; the last
// line is {"ok": true, ...ctx.result}.
export async function runSteps(steps, ctx, dir) {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  for (const step of steps) {
    n += 1;
    const started = Date.now();
    const shot = path.join(dir, `${String(n).padStart(2, "0")}-${step.name}.png`);
    try {
      await step.run(ctx);
    } catch (e) {
      await ctx.page?.screenshot({ path: shot.replace(/\.png$/, "-FAILED.png"), fullPage: true }).catch(() => {});
      console.log(JSON.stringify({ step: step.name, ok: false, error: String(e && e.stack || e) }));
      throw e;
    }
    await ctx.page.screenshot({ path: shot, fullPage: step.fullPage ?? false });
    console.log(JSON.stringify({ step: step.name, ok: true, ms: Date.now() - started, screenshot: shot }));
  }
  console.log(JSON.stringify({ ok: true, ...ctx.result }));
}
