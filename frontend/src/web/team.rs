//! The team portal: members and roles, API tokens (the secret shown once),
//! the public keys of the trust policy, and the policy itself (admins edit).

use serde::Serialize;
use yew::prelude::*;

use super::api;
use super::app::Ctx;
use super::widgets::{input_value, ErrorText};
use crate::model::api::{
    policy_body, ApiFailure, CreatedToken, Member, MemberList, Policy, Role, Token, TokenList,
};
use crate::model::keys::policy_keys;

#[derive(Serialize)]
struct SetRole {
    role: Role,
}

#[derive(Serialize)]
struct NewToken {
    name: String,
    role: Role,
}

#[derive(Default, Clone, PartialEq)]
struct Data {
    members: Vec<Member>,
    tokens: Vec<Token>,
    /// The policy document, indented for reading.
    policy: String,
    policy_updated: Option<String>,
}

/// JSON text indented by the browser's own JSON (no JSON tree in WASM).
fn pretty(json: &str) -> String {
    js_sys::JSON::parse(json)
        .ok()
        .and_then(|v| {
            js_sys::JSON::stringify_with_replacer_and_space(
                &v,
                &wasm_bindgen::JsValue::NULL,
                &wasm_bindgen::JsValue::from(2),
            )
            .ok()
        })
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| json.to_owned())
}

async fn load(team: &str) -> Result<Data, ApiFailure> {
    let members = api::get::<MemberList>(&format!("/teams/{team}/members")).await?;
    let tokens = api::get::<TokenList>(&format!("/teams/{team}/tokens")).await?;
    let policy = api::get::<Policy>(&format!("/teams/{team}/policy")).await?;
    Ok(Data {
        members: members.members,
        tokens: tokens.tokens,
        policy: pretty(&policy.policy),
        policy_updated: policy.updated_at,
    })
}

#[component]
pub fn TeamPage() -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let memberships = ctx.me.as_ref().map(|m| m.teams.clone()).unwrap_or_default();
    let team = use_state(|| {
        memberships
            .first()
            .map(|m| m.team.clone())
            .unwrap_or_default()
    });
    let data = use_state(Data::default);
    let error = use_state(|| None::<ApiFailure>);
    let reload = use_state(|| 0u32);
    let secret = use_state(|| None::<CreatedToken>);
    let new_member = use_state(String::new);
    let new_member_role = use_state(|| Role::Viewer);
    let token_name = use_state(String::new);
    let token_role = use_state(|| Role::Viewer);
    let policy_text = use_state(String::new);

    {
        let (data, error, policy_text) = (data.clone(), error.clone(), policy_text.clone());
        use_effect_with(((*team).clone(), *reload), move |(team, _)| {
            let team = team.clone();
            yew::platform::spawn_local(async move {
                if team.is_empty() {
                    return;
                }
                match load(&team).await {
                    Ok(d) => {
                        policy_text.set(d.policy.clone());
                        data.set(d);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        });
    }

    let role = ctx.me.as_ref().and_then(|m| m.role_in(&team));
    let admin = role == Some(Role::Admin);
    let refresh = {
        let reload = reload.clone();
        move || reload.set(*reload + 1)
    };
    // Runs an API call, then reloads or shows its failure.
    let act = {
        let (error, refresh) = (error.clone(), refresh.clone());
        move |call: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiFailure>>>>| {
            let (error, refresh) = (error.clone(), refresh.clone());
            yew::platform::spawn_local(async move {
                match call.await {
                    Ok(()) => {
                        error.set(None);
                        refresh();
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        }
    };

    let set_role = |user: String| {
        let (act, team) = (act.clone(), (*team).clone());
        Callback::from(move |e: Event| {
            let Some(role) = Role::parse(&input_value(&e)) else {
                return;
            };
            let path = format!("/teams/{team}/members/{user}");
            act(Box::pin(async move {
                api::put::<_, Member>(&path, &SetRole { role })
                    .await
                    .map(|_| ())
            }));
        })
    };
    let remove = |user: String| {
        let (act, team) = (act.clone(), (*team).clone());
        Callback::from(move |_: MouseEvent| {
            let path = format!("/teams/{team}/members/{user}");
            act(Box::pin(async move { api::act("DELETE", &path).await }));
        })
    };
    let add_member = {
        let (act, team, user, role) = (
            act.clone(),
            (*team).clone(),
            new_member.clone(),
            new_member_role.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let path = format!("/teams/{team}/members/{}", *user);
            let role = *role;
            user.set(String::new());
            act(Box::pin(async move {
                api::put::<_, Member>(&path, &SetRole { role })
                    .await
                    .map(|_| ())
            }));
        })
    };
    let create_token = {
        let (team, name, role, secret, error, refresh) = (
            (*team).clone(),
            token_name.clone(),
            token_role.clone(),
            secret.clone(),
            error.clone(),
            refresh.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let body = NewToken {
                name: (*name).clone(),
                role: *role,
            };
            let path = format!("/teams/{team}/tokens");
            let (secret, error, refresh, name) =
                (secret.clone(), error.clone(), refresh.clone(), name.clone());
            yew::platform::spawn_local(async move {
                match api::post::<_, CreatedToken>(&path, &body).await {
                    Ok(t) => {
                        error.set(None);
                        name.set(String::new());
                        secret.set(Some(t));
                        refresh();
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let revoke = |id: String| {
        let (act, team) = (act.clone(), (*team).clone());
        Callback::from(move |_: MouseEvent| {
            let path = format!("/teams/{team}/tokens/{id}");
            act(Box::pin(async move { api::act("DELETE", &path).await }));
        })
    };
    let save_policy = {
        let (act, team, text, error) = (
            act.clone(),
            (*team).clone(),
            policy_text.clone(),
            error.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let body = match policy_body(&text) {
                Ok(b) => b,
                Err(text) => {
                    error.set(Some(ApiFailure {
                        status: 0,
                        code: "bad-json".into(),
                        text,
                    }));
                    return;
                }
            };
            let path = format!("/teams/{team}/policy");
            act(Box::pin(async move {
                api::put_raw::<Policy>(&path, body).await.map(|_| ())
            }));
        })
    };
    let text_setter = |s: &UseStateHandle<String>| {
        let s = s.clone();
        Callback::from(move |e: InputEvent| s.set(input_value(&e.into())))
    };
    let role_setter = |s: &UseStateHandle<Role>| {
        let s = s.clone();
        Callback::from(move |e: Event| {
            if let Some(r) = Role::parse(&input_value(&e)) {
                s.set(r);
            }
        })
    };
    let on_team = {
        let team = team.clone();
        Callback::from(move |e: Event| team.set(input_value(&e)))
    };
    let on_policy = {
        let p = policy_text.clone();
        Callback::from(move |e: InputEvent| p.set(input_value(&e.into())))
    };
    let my_role = role.unwrap_or(Role::Viewer);
    let role_options = |selected: Role, max: Role| -> Html {
        html! { <>{ for Role::ALL.iter().filter(|r| **r <= max).map(|r| html! {
            <option value={r.as_str()} selected={*r == selected}>{ r.as_str() }</option>
        }) }</> }
    };
    let keys = policy_keys(&data.policy);

    html! {
        <section class="team-page">
            <h1>{ "Team" }</h1>
            if memberships.len() > 1 {
                <label for="team-select">{ "Team" }</label>
                <select id="team-select" onchange={on_team}>
                    { for memberships.iter().map(|m| html! {
                        <option value={m.team.clone()} selected={*team == m.team}>{ &m.team }</option>
                    }) }
                </select>
            }
            <p>{ format!("Team {} · your role: {}", *team, my_role.as_str()) }</p>
            <ErrorText error={(*error).clone()} />

            <h2>{ "Members" }</h2>
            <div class="table-wrap">
            <table id="members">
                <thead><tr><th scope="col">{ "User" }</th><th scope="col">{ "Role" }</th>
                    if admin { <th scope="col"><span class="visually-hidden">{ "Actions" }</span></th> }</tr></thead>
                <tbody>
                    { for data.members.iter().map(|m| html! {
                        <tr>
                            <td>{ &m.user }</td>
                            <td>if admin {
                                <label class="visually-hidden" for={format!("role-{}", m.user)}>{ format!("Role of {}", m.user) }</label>
                                <select id={format!("role-{}", m.user)} onchange={set_role(m.user.clone())}>
                                    { role_options(m.role, Role::Admin) }
                                </select>
                            } else { { m.role.as_str() } }</td>
                            if admin { <td><button type="button" onclick={remove(m.user.clone())}
                                aria-label={format!("Remove {}", m.user)}>{ "Remove" }</button></td> }
                        </tr>
                    }) }
                </tbody>
            </table>
            </div>
            if admin {
                <form class="inline" onsubmit={add_member} aria-label="Add a member">
                    <label for="member-name">{ "User name" }</label>
                    <input id="member-name" required=true value={(*new_member).clone()} oninput={text_setter(&new_member)} />
                    <label for="member-role">{ "Role" }</label>
                    <select id="member-role" onchange={role_setter(&new_member_role)}>{ role_options(*new_member_role, Role::Admin) }</select>
                    <button type="submit">{ "Add or change" }</button>
                </form>
            }

            <h2>{ "API tokens" }</h2>
            if let Some(t) = &*secret {
                <div class="secret" role="alert">
                    <p>{ format!("Token “{}” created. Copy its secret now: it is not shown again.", t.name) }</p>
                    <label for="token-secret">{ "Secret" }</label>
                    <input id="token-secret" readonly=true value={t.secret.clone()} />
                </div>
            }
            <div class="table-wrap">
            <table id="tokens">
                <thead><tr><th scope="col">{ "Name" }</th><th scope="col">{ "Role" }</th><th scope="col">{ "Owner" }</th>
                    <th scope="col">{ "Created" }</th><th scope="col">{ "Status" }</th></tr></thead>
                <tbody>
                    { for data.tokens.iter().map(|t| html! {
                        <tr>
                            <td>{ &t.name }</td><td>{ t.role.as_str() }</td><td>{ &t.user }</td><td>{ &t.created_at }</td>
                            <td>{ match &t.revoked_at {
                                Some(at) => html! { <span class="muted">{ format!("revoked {at}") }</span> },
                                None => html! { <button type="button" onclick={revoke(t.id.clone())}
                                    aria-label={format!("Revoke token {}", t.name)}>{ "Revoke" }</button> },
                            } }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
            </div>
            <form class="inline" onsubmit={create_token} aria-label="Create a token">
                <label for="token-name">{ "Token name" }</label>
                <input id="token-name" required=true value={(*token_name).clone()} oninput={text_setter(&token_name)} />
                <label for="token-role">{ "Role" }</label>
                <select id="token-role" onchange={role_setter(&token_role)}>{ role_options(*token_role, my_role) }</select>
                <button type="submit">{ "Create token" }</button>
            </form>

            <h2>{ "Signing keys" }</h2>
            if keys.is_empty() {
                <p class="muted">{ "The team's trust policy names no public keys." }</p>
            } else {
                <ul class="keys">
                    { for keys.iter().map(|k| html! {
                        <li>
                            <strong>{ &k.org }</strong>{ " " }
                            { match &k.fingerprint {
                                Ok(f) => html! { <code>{ f }</code> },
                                Err(e) => html! { <span class="error">{ e }</span> },
                            } }
                            <details><summary>{ "Public key (PEM)" }</summary><pre>{ &k.pem }</pre></details>
                        </li>
                    }) }
                </ul>
            }

            <h2>{ "Trust policy" }</h2>
            <p class="muted">{ match &data.policy_updated {
                Some(at) => format!("Last changed {at}."),
                None => "Never set: builds run under the server's policy alone.".to_owned(),
            } }</p>
            if admin {
                <form onsubmit={save_policy} aria-label="Edit the trust policy">
                    <label for="policy-text">{ "Policy (JSON: require, org[] with name and public_keys)" }</label>
                    <textarea id="policy-text" rows="12" spellcheck="false" value={(*policy_text).clone()} oninput={on_policy} />
                    <button type="submit">{ "Save policy" }</button>
                </form>
            } else {
                <pre id="policy-view">{ (*policy_text).clone() }</pre>
            }
        </section>
    }
}
