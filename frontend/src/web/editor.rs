//! The spec editor: CodeMirror, validated by `shared` in this page on every
//! edit (debounced; no request leaves the browser), a problems list that
//! jumps to each spot, templates, import and export, the draft kept in the
//! URL and local storage, and the build form.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::app::Ctx;
use super::bindings::*;
use super::widgets::{input_value, ErrorText};
use super::{api, check, complete};
use crate::model::api::{ApiFailure, Build, FormatList, SubmitBuild};
use crate::model::draft;
use crate::model::markers::Marker;
use crate::model::route::Route;
use crate::model::templates::{self, TEMPLATES};
use kiln_shared::Severity;

/// How long typing must pause before validating.
const DEBOUNCE_MS: u32 = 60;
/// Where the autosaved draft lives.
const STORAGE_KEY: &str = "kiln.draft";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The draft to start from: the URL's, else the autosaved one, else the
/// minimal template.
fn initial_text() -> String {
    let hash = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default();
    draft::decode(&hash)
        .or_else(|| storage()?.get_item(STORAGE_KEY).ok()?)
        .unwrap_or_else(|| TEMPLATES[0].text.to_owned())
}

/// Keeps `text` in the URL fragment (replacing, not adding, history) and
/// in local storage.
fn save_draft(text: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(STORAGE_KEY, text);
    }
    if let Some(w) = web_sys::window() {
        if let Ok(h) = w.history() {
            let path = w.location().pathname().unwrap_or_else(|_| "/".into());
            let url = format!("{path}#{}", draft::encode(text));
            let _ = h.replace_state_with_url(&JsValue::NULL, "", Some(&url));
        }
    }
}

/// The editor and what lives beside it in JS land.
struct Mounted {
    view: JsValue,
    _on_change: Closure<dyn Fn(String)>,
    _complete: Closure<dyn Fn(String, u32) -> Option<String>>,
}

fn download(name: &str, text: &str) {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/yaml");
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    if let Some(a) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

#[component]
pub fn EditorPage() -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let host = use_node_ref();
    let mounted = use_mut_ref(|| None::<Mounted>);
    let markers = use_state(Vec::<Marker>::new);
    let template = use_state(|| TEMPLATES[0].id.to_owned());

    {
        let (host, mounted, markers) = (host.clone(), mounted.clone(), markers.clone());
        use_effect_with((), move |_| {
            let text = initial_text();
            let timer: Rc<RefCell<Option<Timeout>>> = Rc::new(RefCell::new(None));
            let view_slot: Rc<RefCell<Option<JsValue>>> = Rc::new(RefCell::new(None));
            let run = {
                let (markers, view_slot) = (markers.clone(), view_slot.clone());
                move |text: &str| {
                    let found = check(text);
                    if let Some(view) = &*view_slot.borrow() {
                        editor_show_markers(
                            view,
                            &serde_json::to_string(&found).unwrap_or_default(),
                        );
                    }
                    markers.set(found);
                }
            };
            let on_change = {
                let run = run.clone();
                Closure::<dyn Fn(String)>::new(move |text: String| {
                    let run = run.clone();
                    let pending = Timeout::new(DEBOUNCE_MS, move || {
                        run(&text);
                        save_draft(&text);
                    });
                    // Dropping the previous timeout cancels it.
                    *timer.borrow_mut() = Some(pending);
                })
            };
            let complete =
                Closure::<dyn Fn(String, u32) -> Option<String>>::new(|text: String, pos: u32| {
                    complete(&text, pos)
                });
            if let Some(el) = host.cast::<web_sys::Element>() {
                let view = editor_create(&el, &text, &on_change, &complete);
                *view_slot.borrow_mut() = Some(view.clone());
                run(&text);
                *mounted.borrow_mut() = Some(Mounted {
                    view,
                    _on_change: on_change,
                    _complete: complete,
                });
            }
            move || {
                if let Some(m) = mounted.borrow_mut().take() {
                    editor_destroy(&m.view);
                }
            }
        });
    }

    let view = {
        let mounted = mounted.clone();
        move || mounted.borrow().as_ref().map(|m| m.view.clone())
    };
    let jump = {
        let view = view.clone();
        move |pos: u32| {
            Callback::from({
                let view = view.clone();
                move |_: MouseEvent| {
                    if let Some(v) = view() {
                        editor_jump(&v, pos);
                    }
                }
            })
        }
    };
    let load_template = {
        let (view, template) = (view.clone(), template.clone());
        Callback::from(move |_: MouseEvent| {
            if let (Some(v), Some(t)) = (view(), templates::by_id(&template)) {
                editor_replace(&v, t.text);
            }
        })
    };
    let on_template = {
        let template = template.clone();
        Callback::from(move |e: Event| template.set(input_value(&e)))
    };
    let on_import = {
        let view = view.clone();
        Callback::from(move |e: Event| {
            let Some(input) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            else {
                return;
            };
            let Some(file) = input.files().and_then(|f| f.get(0)) else {
                return;
            };
            let view = view.clone();
            let promise = file.text();
            yew::platform::spawn_local(async move {
                if let Ok(text) = wasm_bindgen_futures::JsFuture::from(promise).await {
                    if let (Some(v), Some(text)) = (view(), text.as_string()) {
                        editor_replace(&v, &text);
                    }
                }
            });
            input.set_value("");
        })
    };
    let on_export = {
        let view = view.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(v) = view() {
                download("spec.yml", &editor_text(&v));
            }
        })
    };

    let errors = markers
        .iter()
        .filter(|m| m.severity == Severity::Error)
        .count();
    let warnings = markers.len() - errors;
    let summary = if markers.is_empty() {
        "No problems: the spec is valid.".to_owned()
    } else {
        format!(
            "{errors} error{}, {warnings} warning{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        )
    };
    let can_build = ctx.me.as_ref().is_some_and(|m| !m.build_teams().is_empty());

    html! {
        <section class="editor-page">
            <h1 class="visually-hidden">{ "Spec editor" }</h1>
            <div class="toolbar" role="toolbar" aria-label="Spec">
                <label for="template">{ "Template" }</label>
                <select id="template" onchange={on_template}>
                    { for TEMPLATES.iter().map(|t| html! {
                        <option value={t.id} selected={*template == t.id}>{ t.title }</option>
                    }) }
                </select>
                <button type="button" onclick={load_template}>{ "Load template" }</button>
                <label class="button" for="import">{ "Import…" }</label>
                <input id="import" class="visually-hidden" type="file" accept=".yml,.yaml,text/yaml"
                    onchange={on_import} />
                <button type="button" onclick={on_export}>{ "Export" }</button>
            </div>
            <div class="editor-layout">
                <div class="editor-host" ref={host}></div>
                <aside class="side">
                    <h2 id="problems-title">{ "Problems" }</h2>
                    <p id="problems-summary" role="status" aria-live="polite"
                        class={if errors > 0 { "bad" } else { "good" }}>{ summary }</p>
                    <ul id="problems" aria-labelledby="problems-title">
                        { for markers.iter().map(|m| html! {
                            <li>
                                <button type="button" class={classes!("problem", m.severity.to_string())}
                                    data-line={m.line.to_string()} onclick={jump(m.from)}>
                                    <span class="where">{ format!("{}:{}", m.line, m.col) }</span>
                                    <span class="sev">{ m.severity.to_string() }</span>
                                    <span class="msg">{ &m.message }</span>
                                    <span class="code">{ format!("[{}]", m.source) }</span>
                                </button>
                            </li>
                        }) }
                    </ul>
                    if can_build {
                        <BuildForm view={ViewHandle(Rc::new(view.clone()))} valid={errors == 0} />
                    } else {
                        <p class="muted" id="no-build">{ "Your role lets you edit and validate specs, not build them." }</p>
                    }
                </aside>
            </div>
        </section>
    }
}

/// A way for the build form to read the editor's current text.
#[derive(Clone)]
pub struct ViewHandle(Rc<dyn Fn() -> Option<JsValue>>);

impl PartialEq for ViewHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct BuildFormProps {
    view: ViewHandle,
    valid: bool,
}

#[component]
fn BuildForm(props: &BuildFormProps) -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let teams = ctx.me.as_ref().map(|m| m.build_teams()).unwrap_or_default();
    let formats = use_state(|| None::<FormatList>);
    let chosen = use_state(Vec::<String>::new);
    let arch = use_state(|| "amd64".to_owned());
    let team = use_state(|| teams.first().cloned().unwrap_or_default());
    let name = use_state(|| "kiln".to_owned());
    let error = use_state(|| None::<ApiFailure>);
    let busy = use_state(|| false);

    {
        let (formats, chosen, error) = (formats.clone(), chosen.clone(), error.clone());
        use_effect_with((), move |_| {
            yew::platform::spawn_local(async move {
                match api::get::<FormatList>("/formats").await {
                    Ok(list) => {
                        chosen.set(list.default.clone());
                        formats.set(Some(list));
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        });
    }

    let toggle = |f: String| {
        let chosen = chosen.clone();
        Callback::from(move |_: Event| {
            let mut list = (*chosen).clone();
            match list.iter().position(|x| *x == f) {
                Some(i) => {
                    list.remove(i);
                }
                None => list.push(f.clone()),
            }
            chosen.set(list);
        })
    };
    let onsubmit = {
        let (chosen, arch, team, name, error, busy) = (
            chosen.clone(),
            arch.clone(),
            team.clone(),
            name.clone(),
            error.clone(),
            busy.clone(),
        );
        let view = props.view.clone();
        let navigate = ctx.navigate.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(v) = (view.0)() else { return };
            let body = SubmitBuild {
                spec: editor_text(&v),
                formats: (*chosen).clone(),
                name: Some((*name).clone()),
                arch: Some((*arch).clone()),
                team: Some((*team).clone()),
                pull: false,
            };
            let (error, busy, navigate) = (error.clone(), busy.clone(), navigate.clone());
            busy.set(true);
            yew::platform::spawn_local(async move {
                match api::post::<_, Build>("/builds", &body).await {
                    Ok(b) => {
                        error.set(None);
                        navigate.emit(Route::Build(b.id));
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        })
    };
    let set = |state: &UseStateHandle<String>| {
        let state = state.clone();
        Callback::from(move |e: Event| state.set(input_value(&e)))
    };
    let on_name = {
        let name = name.clone();
        Callback::from(move |e: InputEvent| name.set(input_value(&e.into())))
    };

    html! {
        <form class="build-form" {onsubmit} aria-labelledby="build-title">
            <h2 id="build-title">{ "Build" }</h2>
            <fieldset>
                <legend>{ "Formats" }</legend>
                if let Some(list) = &*formats {
                    { for list.formats.iter().map(|f| {
                        let id = format!("format-{}", f.name.replace('+', "-"));
                        html! {
                            <div class="check">
                                <input type="checkbox" id={id.clone()} value={f.name.clone()}
                                    checked={chosen.contains(&f.name)} onchange={toggle(f.name.clone())} />
                                <label for={id} title={f.files.join(", ")}>{ &f.name }</label>
                            </div>
                        }
                    }) }
                } else {
                    <p class="muted">{ "Loading formats…" }</p>
                }
            </fieldset>
            <label for="build-arch">{ "Architecture" }</label>
            <select id="build-arch" onchange={set(&arch)}>
                { for ["amd64", "arm64"].iter().map(|a| html! {
                    <option value={*a} selected={*arch == *a}>{ *a }</option>
                }) }
            </select>
            if teams.len() > 1 {
                <label for="build-team">{ "Team" }</label>
                <select id="build-team" onchange={set(&team)}>
                    { for teams.iter().map(|t| html! {
                        <option value={t.clone()} selected={*team == *t}>{ t }</option>
                    }) }
                </select>
            }
            <label for="build-name">{ "Output name" }</label>
            <input id="build-name" value={(*name).clone()} oninput={on_name} />
            <button id="build-submit" type="submit" disabled={*busy || !props.valid || chosen.is_empty()}>
                { "Build" }
            </button>
            if !props.valid {
                <p class="muted">{ "Fix the errors to build." }</p>
            }
            <ErrorText error={(*error).clone()} />
        </form>
    }
}
