// Publishing steps of the browser scenario: a publisher publishes the
// scenario's build from its page, sees the release listed as verified and
// verifies it again; a viewer of the same team sees the build but no
// publish button.
import { env, check, switchUser } from "./lib.mjs";

export function publishSteps(base, logIn) {
  const as = (page, user, password) => switchUser(page, base, logIn, user, password);
  return [
    {
      name: "publisher-publishes",
      async run(ctx) {
        const { page } = ctx;
        await as(page, env("KILN_PUBLISHER"), env("KILN_PUBLISHER_PASSWORD"));
        await page.goto(`${base}/builds/${ctx.result.build_id}`);
        await page.locator("#build-state", { hasText: "succeeded" }).waitFor();
        await page.getByLabel("Registry reference (REGISTRY/REPO:TAG)").fill(env("KILN_PUBLISH_TO"));
        await page.locator("#publish-button").click();
        await page.waitForURL(/\/releases$/, { timeout: 600_000 });
      },
    },
    {
      name: "release-listed-verified",
      fullPage: true,
      async run(ctx) {
        const { page } = ctx;
        const to = env("KILN_PUBLISH_TO");
        const row = page.locator("li.release", { hasText: to });
        await row.waitFor();
        const status = (await row.locator(".verification").textContent()).trim();
        check(status === "Verified", `the release shows "${status}"`);
        const commands = await row.locator(".commands").textContent();
        check(commands.includes(`kiln verify-release --key team.pub ${to}`), "no kiln verify-release command");
        check(commands.includes("openssl dgst -sha256 -verify team.pub"), "no openssl command");
        await page.locator("#team-key", { hasText: "BEGIN PUBLIC KEY" }).waitFor();
        await row.getByRole("button", { name: "Verify now" }).click();
        await page.locator("#checks li.ok", { hasText: "signature" }).first().waitFor({ timeout: 300_000 });
        check(await page.locator("#checks li.failed").count() === 0, "a check failed");
        ctx.result.release_status = status;
        ctx.result.release_id = await row.getAttribute("data-id");
      },
    },
    {
      name: "team-viewer-no-publish-button",
      async run(ctx) {
        const { page } = ctx;
        await as(page, env("KILN_TEAM_VIEWER"), env("KILN_TEAM_VIEWER_PASSWORD"));
        await page.goto(`${base}/builds/${ctx.result.build_id}`);
        await page.locator("#build-state", { hasText: "succeeded" }).waitFor();
        check(await page.locator("#publish-button").count() === 0, "a viewer sees the publish button");
        await page.goto(`${base}/releases`);
        await page.locator("li.release").first().waitFor();
        ctx.result.viewer_publish_buttons = await page.locator("#publish-button").count();
      },
    },
  ];
}
