// The PCR table step of the browser scenario: on the page of a finished
// `uki` build, the measurement manifest's PCR table shows PCR 11 with the
// value the manifest (fetched through the API with the page's session)
// holds, and its events open from the keyboard.
import { env, check, switchUser } from "./lib.mjs";

export function pcrSteps(base, logIn) {
  return [
    {
      name: "pcr-table",
      fullPage: true,
      async run(ctx) {
        const { page } = ctx;
        await switchUser(page, base, logIn, env("KILN_BUILDER"), env("KILN_BUILDER_PASSWORD"));
        await page.goto(`${base}/builds/${env("KILN_UKI_BUILD")}`);
        await page.locator("#build-state", { hasText: /succeeded|failed|cancelled/ }).waitFor({ timeout: 900_000 });
        const state = (await page.locator("#build-state").textContent()).trim();
        check(state === "succeeded", `the uki build ended ${state}: ${await page.locator("#build-log").textContent()}`);

        const link = page.locator('tr[data-artifact$="-measurements.json"] a');
        const response = await page.request.get(new URL(await link.getAttribute("href"), base).href);
        check(response.ok(), `the manifest download answered ${response.status()}`);
        const manifest = await response.json();
        const expected = manifest.pcrs.find((p) => p.pcr === 11).values.sha256;

        const table = page.locator("table.pcr-table").first();
        await table.waitFor();
        const caption = await table.locator("caption").first().textContent();
        check(caption.includes(manifest.referenceModel.name), `the caption does not name the model: ${caption}`);
        const row = table.locator('tr[data-pcr="11"]');
        const shown = (await row.locator('td[data-bank="sha256"]').textContent()).trim();
        check(shown === expected, `PCR 11 shows ${shown}, the manifest holds ${expected}`);
        const note = await page.locator(".pcrs .model-note").first().textContent();
        check(note.includes(manifest.referenceModel.name), `the note does not name the model: ${note}`);
        for (const p of manifest.pcrs.filter((p) => p.basis !== "artifact")) {
          check(new RegExp(`\\b${p.pcr}\\b.*depend`).test(note), `the note does not say PCR ${p.pcr} depends on the model: ${note}`);
        }

        // The events open from the keyboard, one per manifest event.
        const expander = row.locator("button.expander");
        const events = page.locator(`[id="${await expander.getAttribute("aria-controls")}"]`);
        check(await events.isHidden(), "PCR 11's events show before they are opened");
        await expander.focus();
        await page.keyboard.press("Enter");
        await events.waitFor();
        check(await expander.getAttribute("aria-expanded") === "true", "the expander does not say it is expanded");
        const rows = events.locator("tbody tr");
        const wanted = manifest.pcrs.find((p) => p.pcr === 11).events;
        check(await rows.count() === wanted.length, `${await rows.count()} event rows for ${wanted.length} events`);
        check((await rows.first().textContent()).includes(wanted[0].description), "the first event's description is missing");
        await events.scrollIntoViewIfNeeded();
        ctx.result.pcr11_sha256 = shown;
        ctx.result.pcr11_events = wanted.length;
      },
    },
  ];
}
