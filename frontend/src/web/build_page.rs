//! One build: its live log over SSE with progress, the images it resolved
//! with their trust verdicts, its artifacts with digests, and the PCR
//! table of each measurement manifest among them.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::api;
use super::app::Ctx;
use super::pcr_table::PcrTable;
use super::widgets::ErrorText;
use crate::model::api::{ApiFailure, Build, Role};
use crate::model::build_log::Progress;
use crate::model::pcrs;
use crate::model::units;

/// An open event stream and the listeners it calls.
type Stream = (
    web_sys::EventSource,
    Vec<Closure<dyn Fn(web_sys::MessageEvent)>>,
);

/// The event kinds the stream sends.
const KINDS: [&str; 6] = ["state", "log", "plan", "image", "artifact", "end"];

enum Action {
    Start(Box<Build>),
    Refresh(Box<Build>),
    Event {
        seq: i64,
        kind: String,
        data: String,
    },
}

#[derive(PartialEq, Default)]
struct View {
    build: Option<Build>,
    progress: Option<Progress>,
}

impl Reducible for View {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = View {
            build: self.build.clone(),
            progress: self.progress.clone(),
        };
        match action {
            Action::Start(b) => {
                next.progress = Some(Progress::new(&b));
                next.build = Some(*b);
            }
            Action::Refresh(b) => {
                if let Some(p) = &mut next.progress {
                    p.refresh(&b);
                }
            }
            Action::Event { seq, kind, data } => {
                if let (Some(p), Some(b)) = (&mut next.progress, &next.build) {
                    p.apply(seq, &kind, &data, &b.id);
                }
            }
        }
        Rc::new(next)
    }
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub id: String,
}

#[component]
pub fn BuildPage(props: &Props) -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let view = use_reducer(View::default);
    let error = use_state(|| None::<ApiFailure>);

    {
        let (view, error) = (view.clone(), error.clone());
        use_effect_with(props.id.clone(), move |id| {
            let id = id.clone();
            let source: Rc<std::cell::RefCell<Option<Stream>>> = Rc::default();
            {
                let source = source.clone();
                yew::platform::spawn_local(async move {
                    let build = match api::get::<Build>(&format!("/builds/{id}")).await {
                        Ok(b) => b,
                        Err(e) => {
                            error.set(Some(e));
                            return;
                        }
                    };
                    view.dispatch(Action::Start(Box::new(build)));
                    let Ok(es) = web_sys::EventSource::new(&format!("/api/v1/builds/{id}/events"))
                    else {
                        return;
                    };
                    let mut listeners = Vec::new();
                    for kind in KINDS {
                        let view = view.clone();
                        let es2 = es.clone();
                        let id = id.clone();
                        let listener = Closure::<dyn Fn(web_sys::MessageEvent)>::new(
                            move |m: web_sys::MessageEvent| {
                                let seq = m.last_event_id().parse::<i64>().unwrap_or(0);
                                let data = m.data().as_string().unwrap_or_default();
                                view.dispatch(Action::Event {
                                    seq,
                                    kind: kind.to_owned(),
                                    data,
                                });
                                if kind == "end" {
                                    // The stream ends here; without closing, the
                                    // browser would reconnect forever.
                                    es2.close();
                                    let (view, id) = (view.clone(), id.clone());
                                    yew::platform::spawn_local(async move {
                                        let path = format!("/builds/{id}");
                                        if let Ok(b) = api::get::<Build>(&path).await {
                                            view.dispatch(Action::Refresh(Box::new(b)));
                                        }
                                    });
                                }
                            },
                        );
                        let _ = es.add_event_listener_with_callback(
                            kind,
                            listener.as_ref().unchecked_ref(),
                        );
                        listeners.push(listener);
                    }
                    *source.borrow_mut() = Some((es, listeners));
                });
            }
            move || {
                if let Some((es, _)) = source.borrow_mut().take() {
                    es.close();
                }
            }
        });
    }

    let cancel = {
        let (id, error) = (props.id.clone(), error.clone());
        Callback::from(move |_: MouseEvent| {
            let (id, error) = (id.clone(), error.clone());
            yew::platform::spawn_local(async move {
                if let Err(e) = api::act("POST", &format!("/builds/{id}/cancel")).await {
                    error.set(Some(e));
                }
            });
        })
    };

    let (Some(build), Some(p)) = (&view.build, &view.progress) else {
        return html! {
            <section>
                <h1>{ "Build " }<code>{ &props.id }</code></h1>
                if error.is_none() { <p class="muted" role="status">{ "Loading…" }</p> }
                <ErrorText error={(*error).clone()} />
            </section>
        };
    };
    let may_cancel = ctx
        .me
        .as_ref()
        .and_then(|m| m.role_in(&build.team))
        .is_some_and(|r| r >= Role::Builder);

    html! {
        <section class="build-page">
            <h1>{ "Build " }<code>{ &build.id }</code></h1>
            <p class="meta">
                { format!("Team {} · {} · {} · by {} · submitted {}", build.team, build.formats.join(", "),
                    build.arch, build.created_by, build.created_at) }
            </p>
            <div class="progress-row">
                <label for="build-progress">{ "Progress" }</label>
                <progress id="build-progress" max="100" value={p.percent().to_string()}>
                    { format!("{}%", p.percent()) }
                </progress>
                <span id="build-state" class={classes!("state", p.state.clone())} role="status" aria-live="polite">
                    { &p.state }
                </span>
                if may_cancel && !p.ended() {
                    <button type="button" onclick={cancel}>{ "Cancel" }</button>
                }
            </div>
            if let Some(err) = &p.error {
                <p class="error" role="alert">{ err }</p>
            }
            <ErrorText error={(*error).clone()} />
            if p.state == "succeeded" {
                <super::releases::PublishForm build={Build { state: p.state.clone(), ..build.clone() }} />
            }

            <h2>{ "Outputs" }</h2>
            <ul class="outputs">
                { for p.formats.iter().map(|f| {
                    let status = if p.state == "succeeded" { "written" }
                        else if p.ended() { "not written" }
                        else if p.writing { "writing" } else { "waiting" };
                    html! { <li>{ f }{ ": " }<span class="muted">{ status }</span></li> }
                }) }
            </ul>

            <h2>{ "Images and trust" }</h2>
            if p.images.is_empty() {
                <p class="muted">{ "No images resolved yet." }</p>
            } else {
                <div class="table-wrap">
                <table id="images">
                    <thead><tr>
                        <th scope="col">{ "Image" }</th><th scope="col">{ "Digest" }</th>
                        <th scope="col">{ "Source" }</th><th scope="col">{ "Trust" }</th>
                    </tr></thead>
                    <tbody>
                        { for p.images.iter().map(|i| html! {
                            <tr>
                                <td><code>{ &i.reference }</code></td>
                                <td>{ match &i.digest {
                                    Some(d) => html! { <code title={d.clone()}>{ units::short_digest(d) }</code> },
                                    None => html! { <span class="muted">{ "resolving…" }</span> },
                                } }</td>
                                <td>{ if i.digest.is_none() { "" } else if i.cached { "store" } else { "registry" } }</td>
                                <td>{ match &p.trust_of(i) {
                                    Some(t) => html! { <span class={classes!("trust", t.status.clone())}>
                                        { &t.status }{ t.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default() }
                                    </span> },
                                    None => html! { <span class="muted">{ "not checked" }</span> },
                                } }</td>
                            </tr>
                        }) }
                    </tbody>
                </table>
                </div>
            }

            <h2>{ "Artifacts" }</h2>
            if p.artifacts.is_empty() {
                <p class="muted">{ "None yet." }</p>
            } else {
                <div class="table-wrap">
                <table id="artifacts">
                    <thead><tr>
                        <th scope="col">{ "File" }</th><th scope="col">{ "Size" }</th>
                        <th scope="col">{ "SHA-256" }</th>
                    </tr></thead>
                    <tbody>
                        { for p.artifacts.iter().map(|a| html! {
                            <tr data-artifact={a.name.clone()}>
                                <td><a href={a.url.clone()} download={a.name.clone()}>{ &a.name }</a></td>
                                <td title={format!("{} bytes", a.size)}>{ units::size(a.size) }</td>
                                <td><code class="sha256">{ &a.sha256 }</code></td>
                            </tr>
                        }) }
                    </tbody>
                </table>
                </div>
            }

            if p.state == "succeeded" && pcrs::manifests(&p.artifacts).next().is_some() {
                <h2>{ "Measured boot" }</h2>
                { for pcrs::manifests(&p.artifacts).enumerate().map(|(i, a)| html! {
                    <PcrTable key={a.name.clone()} url={a.url.clone()} name={a.name.clone()} index={i} />
                }) }
            }

            <h2 id="log-title">{ "Log" }</h2>
            <ol id="build-log" class="log" aria-labelledby="log-title" tabindex="0">
                { for p.log.iter().map(|l| html! { <li data-seq={l.seq.to_string()}>{ &l.text }</li> }) }
            </ol>
        </section>
    }
}
