//! The CodeMirror wrapper (`web/js/editor.js`), which the page's script
//! puts on `window.kilnEditor`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = kilnEditor, js_name = create)]
    pub fn editor_create(
        parent: &web_sys::Element,
        doc: &str,
        on_change: &Closure<dyn Fn(String)>,
        complete: &Closure<dyn Fn(String, u32) -> Option<String>>,
    ) -> JsValue;

    #[wasm_bindgen(js_namespace = kilnEditor, js_name = showMarkers)]
    pub fn editor_show_markers(view: &JsValue, markers_json: &str);

    #[wasm_bindgen(js_namespace = kilnEditor, js_name = text)]
    pub fn editor_text(view: &JsValue) -> String;

    #[wasm_bindgen(js_namespace = kilnEditor, js_name = replace)]
    pub fn editor_replace(view: &JsValue, doc: &str);

    #[wasm_bindgen(js_namespace = kilnEditor, js_name = jump)]
    pub fn editor_jump(view: &JsValue, pos: u32);

    #[wasm_bindgen(js_namespace = kilnEditor, js_name = destroy)]
    pub fn editor_destroy(view: &JsValue);
}
