// The page's entry: exposes the editor to the Rust app, then starts it.
import * as editor from "./editor.js";
import init, * as kiln from "../pkg/kiln_frontend.js";

window.kilnEditor = editor;
window.kiln = kiln;
await init({ module_or_path: "/assets/kiln_frontend_bg.wasm" });
