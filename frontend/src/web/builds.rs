//! The team's build history, with filters.

use yew::prelude::*;

use super::api;
use super::app::Ctx;
use super::widgets::{input_value, ErrorText};
use crate::model::api::{ApiFailure, BuildList};
use crate::model::history::Filter;
use crate::model::route::Route;

const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

#[component]
pub fn BuildsPage() -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let filter = use_state(Filter::default);
    let builds = use_state(|| None::<BuildList>);
    let error = use_state(|| None::<ApiFailure>);

    {
        let (builds, error) = (builds.clone(), error.clone());
        let query = filter.query();
        use_effect_with(query, move |query| {
            let query = query.clone();
            yew::platform::spawn_local(async move {
                match api::get::<BuildList>(&format!("/builds?{query}")).await {
                    Ok(list) => {
                        error.set(None);
                        builds.set(Some(list));
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        });
    }
    let set = |f: fn(&mut Filter, String)| {
        let filter = filter.clone();
        Callback::from(move |e: Event| {
            let mut next = (*filter).clone();
            f(&mut next, input_value(&e));
            filter.set(next);
        })
    };
    let on_text = {
        let filter = filter.clone();
        Callback::from(move |e: InputEvent| {
            let mut next = (*filter).clone();
            next.text = input_value(&e.into());
            filter.set(next);
        })
    };
    let teams: Vec<String> = ctx
        .me
        .as_ref()
        .map(|m| m.teams.iter().map(|t| t.team.clone()).collect())
        .unwrap_or_default();
    let open = |id: String| {
        let navigate = ctx.navigate.clone();
        Callback::from(move |e: MouseEvent| {
            if e.ctrl_key() || e.meta_key() || e.button() != 0 {
                return;
            }
            e.prevent_default();
            navigate.emit(Route::Build(id.clone()));
        })
    };

    html! {
        <section>
            <h1>{ "Builds" }</h1>
            <form class="filters" role="search" aria-label="Filter builds" onsubmit={Callback::from(|e: SubmitEvent| e.prevent_default())}>
                <label for="filter-team">{ "Team" }</label>
                <select id="filter-team" onchange={set(|f, v| f.team = v)}>
                    <option value="" selected={filter.team.is_empty()}>{ "All my teams" }</option>
                    { for teams.iter().map(|t| html! { <option value={t.clone()} selected={filter.team == *t}>{ t }</option> }) }
                </select>
                <label for="filter-state">{ "State" }</label>
                <select id="filter-state" onchange={set(|f, v| f.state = v)}>
                    <option value="" selected={filter.state.is_empty()}>{ "Any" }</option>
                    { for STATES.iter().map(|s| html! { <option value={*s} selected={filter.state == *s}>{ *s }</option> }) }
                </select>
                <label for="filter-text">{ "Search" }</label>
                <input id="filter-text" type="search" placeholder="id, name, user, format"
                    value={filter.text.clone()} oninput={on_text} />
            </form>
            <ErrorText error={(*error).clone()} />
            if let Some(list) = &*builds {
                if filter.apply(&list.builds).is_empty() {
                    <p class="muted">{ "No builds match." }</p>
                } else {
                    <div class="table-wrap">
                    <table id="history">
                        <thead><tr>
                            <th scope="col">{ "Build" }</th><th scope="col">{ "State" }</th>
                            <th scope="col">{ "Team" }</th><th scope="col">{ "Formats" }</th>
                            <th scope="col">{ "Arch" }</th><th scope="col">{ "By" }</th>
                            <th scope="col">{ "Submitted" }</th>
                        </tr></thead>
                        <tbody>
                            { for filter.apply(&list.builds).into_iter().map(|b| html! {
                                <tr>
                                    <td><a href={Route::Build(b.id.clone()).path()} onclick={open(b.id.clone())}>
                                        <code>{ &b.id }</code></a></td>
                                    <td><span class={classes!("state", b.state.clone())}>{ &b.state }</span></td>
                                    <td>{ &b.team }</td>
                                    <td>{ b.formats.join(", ") }</td>
                                    <td>{ &b.arch }</td>
                                    <td>{ &b.created_by }</td>
                                    <td>{ &b.created_at }</td>
                                </tr>
                            }) }
                        </tbody>
                    </table>
                    </div>
                }
            } else if error.is_none() {
                <p class="muted" role="status">{ "Loading…" }</p>
            }
        </section>
    }
}
