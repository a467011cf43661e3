//! Releases: the publish form on a finished build (publishers and admins
//! only), and the releases page with each release's verification status,
//! a "verify now" action and the commands that check it outside kiln.

use yew::prelude::*;

use super::api;
use super::app::Ctx;
use super::widgets::{input_value, ErrorText};
use crate::model::api::{ApiFailure, Build};
use crate::model::releases::{
    can_publish, check_target, status_label, PublishRequest, Release, ReleaseList, TeamKeyList,
    VerifyReport,
};
use crate::model::route::Route;

#[derive(Properties, PartialEq)]
pub struct PublishProps {
    pub build: Build,
}

/// The publish form; renders nothing for callers who may not publish.
#[component]
pub fn PublishForm(props: &PublishProps) -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let to = use_state(String::new);
    let error = use_state(|| None::<ApiFailure>);
    let busy = use_state(|| false);
    if !can_publish(ctx.me.as_deref(), &props.build) {
        return html! {};
    }
    let oninput = {
        let to = to.clone();
        Callback::from(move |e: InputEvent| to.set(input_value(&e)))
    };
    let onsubmit = {
        let (to, error, busy, navigate) = (to.clone(), error.clone(), busy.clone(), ctx.navigate);
        let id = props.build.id.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Err(m) = check_target(&to) {
                error.set(Some(ApiFailure {
                    status: 0,
                    code: "bad-target".into(),
                    text: m.into(),
                }));
                return;
            }
            let (to, error, busy, navigate, id) = (
                to.trim().to_owned(),
                error.clone(),
                busy.clone(),
                navigate.clone(),
                id.clone(),
            );
            busy.set(true);
            yew::platform::spawn_local(async move {
                let r = api::post::<_, Release>(
                    &format!("/builds/{id}/publish"),
                    &PublishRequest { to },
                )
                .await;
                busy.set(false);
                match r {
                    Ok(_) => navigate.emit(Route::Releases),
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    html! {
        <section aria-labelledby="publish-h">
            <h2 id="publish-h">{ "Publish" }</h2>
            <form id="publish" {onsubmit}>
                <label for="publish-to">{ "Registry reference (REGISTRY/REPO:TAG)" }</label>
                <input id="publish-to" name="to" value={(*to).clone()} {oninput}
                    placeholder="registry.example/team/os:1.0" autocomplete="off" />
                <button type="submit" id="publish-button" disabled={*busy}>
                    { if *busy { "Publishing…" } else { "Publish" } }
                </button>
            </form>
            <ErrorText error={(*error).clone()} />
        </section>
    }
}

fn copy(text: String) -> Callback<MouseEvent> {
    Callback::from(move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&text);
        }
    })
}

#[derive(Properties, PartialEq)]
struct RowProps {
    release: Release,
    on_verified: Callback<VerifyReport>,
}

#[component]
fn ReleaseRow(props: &RowProps) -> Html {
    let busy = use_state(|| false);
    let error = use_state(|| None::<ApiFailure>);
    let r = &props.release;
    let verify = {
        let (busy, error, on_verified, id) = (
            busy.clone(),
            error.clone(),
            props.on_verified.clone(),
            r.id.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            let (busy, error, on_verified, id) =
                (busy.clone(), error.clone(), on_verified.clone(), id.clone());
            busy.set(true);
            yew::platform::spawn_local(async move {
                let report = api::get::<VerifyReport>(&format!("/releases/{id}/verify")).await;
                busy.set(false);
                match report {
                    Ok(report) => on_verified.emit(report),
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    html! {
        <li class="release" data-id={r.id.clone()}>
            <h3>{ &r.name }{ " " }<code>{ &r.reference }</code></h3>
            <p>
                <span class={classes!("verification", r.verification.clone())} role="status">
                    { status_label(&r.verification) }
                </span>
                { " · " }<code title={r.digest.clone()}>{ &r.digest }</code>
                { " · published by " }{ &r.published_by }{ " at " }{ &r.published_at }
                { for r.verified_at.iter().map(|t| html! { <>{ " · checked " }{ t }</> }) }
            </p>
            <button class="verify" onclick={verify} disabled={*busy}>
                { if *busy { "Verifying…" } else { "Verify now" } }
            </button>
            <ErrorText error={(*error).clone()} />
            <p class="muted">{ "Save the team key as team.pub, then:" }</p>
            <ul class="commands">
                { for r.verify_commands.iter().map(|c| html! {
                    <li><pre><code>{ c }</code></pre>
                        <button class="copy" onclick={copy(c.clone())}>{ "Copy" }</button></li>
                }) }
            </ul>
        </li>
    }
}

#[derive(Clone, PartialEq, Default)]
struct Data {
    releases: Vec<Release>,
    key: Option<String>,
    checks: Option<VerifyReport>,
}

/// The releases of the caller's teams.
#[component]
pub fn ReleasesPage() -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let data = use_state(Data::default);
    let error = use_state(|| None::<ApiFailure>);
    let team = ctx
        .me
        .as_ref()
        .and_then(|m| m.teams.first().map(|t| t.team.clone()));
    {
        let (data, error) = (data.clone(), error.clone());
        use_effect_with(team.clone(), move |team| {
            let team = team.clone();
            yew::platform::spawn_local(async move {
                let list = match api::get::<ReleaseList>("/releases").await {
                    Ok(l) => l,
                    Err(e) => return error.set(Some(e)),
                };
                let key = match &team {
                    Some(t) => api::get::<TeamKeyList>(&format!("/teams/{t}/keys"))
                        .await
                        .ok()
                        .and_then(|k| k.keys.into_iter().next())
                        .map(|k| k.pem),
                    None => None,
                };
                data.set(Data {
                    releases: list.releases,
                    key,
                    checks: None,
                });
            });
        });
    }
    let on_verified = {
        let data = data.clone();
        Callback::from(move |report: VerifyReport| {
            let mut next = (*data).clone();
            for r in &mut next.releases {
                if r.id == report.release.id {
                    *r = report.release.clone();
                }
            }
            next.checks = Some(report);
            data.set(next);
        })
    };
    html! {
        <section aria-labelledby="releases-h">
            <h1 id="releases-h">{ "Releases" }</h1>
            <ErrorText error={(*error).clone()} />
            if data.releases.is_empty() {
                <p class="muted">{ "Nothing published yet. Publish a finished build from its page." }</p>
            }
            <ul id="releases">
                { for data.releases.iter().map(|r| html! {
                    <ReleaseRow release={r.clone()} on_verified={on_verified.clone()} />
                }) }
            </ul>
            { for data.checks.iter().map(|report| html! {
                <section id="checks" aria-labelledby="checks-h">
                    <h2 id="checks-h">{ "Checks of " }<code>{ &report.release.reference }</code></h2>
                    <ul>
                        { for report.checks.iter().map(|c| html! {
                            <li class={if c.ok { "ok" } else { "failed" }}>
                                { if c.ok { "✓ " } else { "✗ " } }<strong>{ &c.what }</strong>{ ": " }{ &c.detail }
                            </li>
                        }) }
                    </ul>
                </section>
            }) }
            { for data.key.iter().map(|pem| html! {
                <section aria-labelledby="key-h">
                    <h2 id="key-h">{ "Team public key (team.pub)" }</h2>
                    <pre id="team-key"><code>{ pem }</code></pre>
                    <button class="copy" onclick={copy(pem.clone())}>{ "Copy" }</button>
                </section>
            }) }
        </section>
    }
}
